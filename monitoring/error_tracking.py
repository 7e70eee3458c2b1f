"""The ErrorLog: every 5xx and unexpected exception stored once per fingerprint, with a count."""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import traceback
from typing import Any

from flask import has_request_context, request
from sqlalchemy.dialects import postgresql, sqlite

from config import runtime
from database import db
from models import ErrorLog
from utils.request_id import current_request_id

log = logging.getLogger(__name__)

MAX_TRACE_CHARS = 20000


def fingerprint_for(error_type: str, stack_trace: str, where: str) -> str:
    """Same type raised from the same code path: same fingerprint, whatever the message."""
    frames = [line.strip() for line in stack_trace.splitlines() if line.strip().startswith("File ")]
    basis = "\n".join([error_type, where, *frames[-5:]])
    return hashlib.sha256(basis.encode()).hexdigest()


def describe_error(error: BaseException, status_code: int) -> dict[str, Any]:
    """The ErrorLog fields for an exception raised while serving the current request."""
    error_type = getattr(error, "code", None) if status_code < 500 else None
    error_type = error_type if isinstance(error_type, str) else type(error).__name__
    stack_trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    record: dict[str, Any] = {
        "error_type": error_type[:200],
        "error_message": str(error)[:2000],
        "stack_trace": stack_trace[-MAX_TRACE_CHARS:],
        "status_code": status_code,
        "request_id": current_request_id(),
    }
    where = ""
    if has_request_context():
        record.update(path=request.path[:500], method=request.method,
                      user_agent=(request.user_agent.string or "")[:300])
        where = f"{request.method} {request.url_rule.rule if request.url_rule else request.path}"
    record["fingerprint"] = fingerprint_for(record["error_type"], stack_trace, where)
    return record


def store_error(record: dict[str, Any], now: dt.datetime) -> None:
    """Insert the record, or bump the count of the row with the same fingerprint."""
    values = {**record, "timestamp": now, "last_seen_at": now, "occurrence_count": 1,
              "resolved": False}
    module = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    statement = module.insert(ErrorLog).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=["fingerprint"],
        set_={
            "occurrence_count": ErrorLog.occurrence_count + 1,
            "last_seen_at": statement.excluded.last_seen_at,
            "request_id": statement.excluded.request_id,
            "error_message": statement.excluded.error_message,
            "resolved": False,
            "resolved_at": None,
        })
    with db.engine.begin() as connection:
        connection.execute(statement)


def record_error(error: BaseException, status_code: int) -> None:
    """Store an error in the ErrorLog, or in the spool while the database is down.

    Never raises: the error page must still be served.
    """
    try:
        record = describe_error(error, status_code)
        now = runtime().clock.now()
    except Exception:
        log.warning("could not describe error", exc_info=True)
        return
    try:
        store_error(record, now)
    except Exception as store_failure:  # the database may be the thing that is down
        log.warning("error log unavailable (%s); spooling the record",
                    type(store_failure).__name__)
        try:
            runtime().error_spool.append({**record, "seen_at": now.isoformat()})
        except Exception:
            log.warning("could not spool error record", exc_info=True)


def replay_error_records(records: list[dict[str, Any]]) -> None:
    """Store error records spooled while the database was down."""
    for record in records:
        seen_at = dt.datetime.fromisoformat(record.pop("seen_at"))
        store_error(record, seen_at)
