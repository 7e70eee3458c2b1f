"""The ErrorLog: every 5xx and unexpected exception stored once per fingerprint, with a count."""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import logging
import traceback
from typing import Any, Iterable

from flask import has_request_context, request
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from database import db
from exceptions import ErrorNotFound
from models import ErrorLog
from monitoring import metrics
from monitoring.error_rate import current_error_rate
from monitoring.scrubbing import scrub_text
from runtime import current_runtime
from utils.clock import utc_iso
from utils.pagination import paginate
from utils.request_id import current_request_id

log = logging.getLogger(__name__)

MAX_TRACE_CHARS = 20000


def fingerprint_for(error_type: str, stack_trace: str, where: str) -> str:
    """Same type raised from the same code path: same fingerprint, whatever the message."""
    frames = [line.strip() for line in stack_trace.splitlines() if line.strip().startswith("File ")]
    basis = "\n".join([error_type, where, *frames[-5:]])
    return hashlib.sha256(basis.encode()).hexdigest()


def describe_error(error: BaseException, status_code: int) -> dict[str, Any]:
    """The ErrorLog fields for an exception raised while serving the current request.

    Message and trace are scrubbed of secrets (§7): the error API and CSV export show them.
    """
    error_type = getattr(error, "code", None) if status_code < 500 else None
    error_type = error_type if isinstance(error_type, str) else type(error).__name__
    stack_trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    record: dict[str, Any] = {
        "error_type": error_type[:200],
        "error_message": scrub_text(str(error))[:2000],
        "stack_trace": scrub_text(stack_trace)[-MAX_TRACE_CHARS:],
        "status_code": status_code,
        "request_id": current_request_id(),
    }
    where = ""
    if has_request_context():
        record.update(path=request.path[:500], method=request.method,
                      user_agent=scrub_text(request.user_agent.string or "")[:300])
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
        now = current_runtime().clock.now()
    except Exception:
        log.warning("could not describe error", exc_info=True)
        return
    metrics.ERRORS_LOGGED.labels(error_type=record["error_type"]).inc()
    if current_runtime().db_breaker.state == "closed":
        try:
            store_error(record, now)
            return
        except Exception as store_failure:  # the database may be the thing that is down
            log.warning("error log unavailable (%s); spooling the record",
                        type(store_failure).__name__)
    try:
        current_runtime().error_spool.append({**record, "seen_at": now.isoformat()})
    except Exception as spool_failure:  # SpoolFull: the log line is then the only record
        metrics.ERROR_RECORDS_DROPPED.inc()
        log.error("error record not kept (database and spool unavailable: %s): %s %s: %s",
                  spool_failure, record.get("status_code"), record["error_type"],
                  record["error_message"][:500])


def replay_error_records(records: list[dict[str, Any]]) -> None:
    """Store error records spooled while the database was down."""
    for record in records:
        seen_at = dt.datetime.fromisoformat(record.pop("seen_at"))
        store_error(record, seen_at)


# --- Reading and managing the log (the errors API) -----------------------------------------

CSV_COLUMNS = ("id", "error_type", "error_message", "occurrence_count", "timestamp",
               "last_seen_at", "resolved", "resolved_at", "status_code", "method", "path",
               "request_id", "user_agent")
MAX_CSV_ROWS = 10000


def _filtered(error_type: str | None, resolved: bool | None, since: dt.datetime | None,
              until: dt.datetime | None):
    """Rows matching the filters; since/until select rows that occurred within the range."""
    query = select(ErrorLog)
    if error_type:
        query = query.where(ErrorLog.error_type == error_type)
    if resolved is not None:
        query = query.where(ErrorLog.resolved.is_(resolved))
    if since is not None:
        query = query.where(ErrorLog.last_seen_at >= since)
    if until is not None:
        query = query.where(ErrorLog.timestamp < until)
    return query


def list_errors(error_type: str | None = None, resolved: bool | None = None,
                since: dt.datetime | None = None, until: dt.datetime | None = None,
                limit: int = 50, cursor: str | None = None) -> tuple[list[ErrorLog], str | None]:
    """One page of error records, newest first, and the cursor of the next page."""
    return paginate(_filtered(error_type, resolved, since, until), [ErrorLog.id], limit, cursor,
                    scope="errors")


def get_error(error_id: int) -> ErrorLog:
    error = db.session.get(ErrorLog, error_id)
    if error is None:
        raise ErrorNotFound(error_id)
    return error


def resolve_error(error_id: int, now: dt.datetime) -> ErrorLog:
    """Mark a record resolved; resolving twice keeps the first resolution time."""
    db.session.execute(update(ErrorLog)
                       .where(ErrorLog.id == error_id, ErrorLog.resolved.is_(False))
                       .values(resolved=True, resolved_at=now))
    db.session.commit()
    return get_error(error_id)


def error_stats(now: dt.datetime) -> dict[str, Any]:
    """Totals, unresolved, per type, the last 24 hours and the current error rate."""
    day_ago = now - dt.timedelta(hours=24)
    total, occurrences, unresolved, last_24h = db.session.execute(select(
        func.count(ErrorLog.id),
        func.coalesce(func.sum(ErrorLog.occurrence_count), 0),
        func.count(ErrorLog.id).filter(ErrorLog.resolved.is_(False)),
        func.count(ErrorLog.id).filter(ErrorLog.last_seen_at >= day_ago),
    )).one()
    by_type = db.session.execute(
        select(ErrorLog.error_type, func.count(ErrorLog.id))
        .group_by(ErrorLog.error_type).order_by(func.count(ErrorLog.id).desc(),
                                                 ErrorLog.error_type)).all()
    return {
        "total": total,
        "occurrences": int(occurrences),
        "unresolved": unresolved,
        "last_24h": last_24h,
        "by_type": {error_type: count for error_type, count in by_type},
        "error_rate": current_error_rate(now).as_dict(),
        "generated_at": now,
    }


def export_errors_csv(error_type: str | None = None, resolved: bool | None = None,
                      since: dt.datetime | None = None, until: dt.datetime | None = None) -> str:
    """The matching records (newest first, at most MAX_CSV_ROWS) as CSV, without stack traces."""
    query = _filtered(error_type, resolved, since, until).order_by(ErrorLog.id.desc())
    rows = db.session.execute(query.limit(MAX_CSV_ROWS)).scalars()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_row(row) for row in rows)
    return buffer.getvalue()


def _csv_row(error: ErrorLog) -> Iterable[Any]:
    for column in CSV_COLUMNS:
        value = getattr(error, column)
        if isinstance(value, dt.datetime):
            value = utc_iso(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
            value = "'" + value  # keep spreadsheets from evaluating a cell as a formula
        yield "" if value is None else value


def prune_resolved_errors(now: dt.datetime) -> int:
    """Delete resolved records resolved more than ERROR_RETENTION_DAYS ago; returns the count."""
    cutoff = now - dt.timedelta(days=current_runtime().settings.ERROR_RETENTION_DAYS)
    result = db.session.execute(delete(ErrorLog).where(
        ErrorLog.resolved.is_(True), ErrorLog.resolved_at < cutoff))
    db.session.commit()
    return result.rowcount or 0
