"""Recording what each delivery attempt did: the alert's new state and the attempt, once.

A slot (delivery.py) sends its next alert only after the outcome of its last one is written, so
a crash resends at most the sends in flight. Outcomes queued by several slots at once are written
in one transaction by one of the waiting threads (a group commit), on PostgreSQL in one
statement on the writer's own connection. Each write is a compare-and-set on the claim's lease:
an alert whose claim was lost meanwhile is not overwritten. While the database is away, outcomes
stay queued, their alerts still claimed by this process, and the next pass writes them.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import logging
import threading
from typing import Any, Callable

from flask import Flask
from sqlalchemy import Connection, Engine, bindparam, text

from database import db, is_connection_error, utc_text
from models import Alert, DeliveryAttempt
from monitoring.error_tracking import record_error

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What to write for one claimed alert: its new values and the attempt, if one was made."""

    alert_id: int
    lease: dt.datetime
    values: dict[str, Any]
    attempt: dict[str, Any] | None = None


class OutcomeWriter:
    """Writes outcomes in groups; tells `released` which alerts' claims it has given back."""

    def __init__(self, app: Flask, released: Callable[[set[int]], None]):
        self.app = app
        self.released = released
        self._lock = threading.Condition()
        self._queue: list[tuple[int, Outcome]] = []  # (ticket, outcome), oldest first
        self._tickets = self._written_ticket = self._failed_ticket = 0
        self._writing = False  # one thread at a time writes, on this connection (PostgreSQL)
        self._engine: Engine | None = None
        self._connection: Connection | None = None

    def record(self, outcomes: list[Outcome]) -> bool:
        """Queue outcomes; True once they are written, False if writing them failed."""
        with self._lock:
            self._tickets += 1
            ticket = self._tickets
            self._queue.extend((ticket, outcome) for outcome in outcomes)
            while True:
                if self._written_ticket >= ticket:
                    return True
                if self._failed_ticket >= ticket:
                    return False
                if not self._writing:
                    self._writing = True
                    break
                self._lock.wait()
        self._write_queued()
        with self._lock:
            return self._written_ticket >= ticket

    def flush(self) -> None:
        """Write outcomes whose write failed before (the database was down)."""
        with self._lock:
            if self._writing or not self._queue:
                return
            self._writing = True
        self._write_queued()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _write_queued(self) -> None:
        """Write every queued outcome in one transaction; the caller holds the writing role."""
        with self._lock:
            queued, self._queue = self._queue, []
        last_ticket = max((ticket for ticket, _ in queued), default=0)
        kept: list[tuple[int, Outcome]] = []
        try:
            self._write([outcome for _, outcome in queued])
        except Exception as error:
            if is_connection_error(error):
                kept = queued
            else:  # one the database refuses (its alert deleted meanwhile) must not block all
                kept = self._write_one_by_one(queued)
            if kept:
                log.warning("recording %d alert outcomes failed, kept to retry: %s",
                            len(kept), type(error).__name__)
        kept_ids = {outcome.alert_id for _, outcome in kept}
        self.released({outcome.alert_id for _, outcome in queued
                       if outcome.alert_id not in kept_ids})
        with self._lock:
            self._queue[:0] = kept
            if kept:
                self._failed_ticket = last_ticket
            else:
                self._written_ticket = max(self._written_ticket, last_ticket)
            self._writing = False
            self._lock.notify_all()

    def _write_one_by_one(self, queued: list[tuple[int, Outcome]]) -> list[tuple[int, Outcome]]:
        """Write each outcome alone; drop those refused, return those kept (database away)."""
        for index, (_, outcome) in enumerate(queued):
            try:
                self._write([outcome])
            except Exception as error:
                if is_connection_error(error):
                    return queued[index:]
                log.warning("dropped the outcome of alert %d, refused by the database: %s",
                            outcome.alert_id, type(error).__name__)
                with self.app.app_context():
                    record_error(error, 500)
        return []

    def _write(self, outcomes: list[Outcome]) -> None:
        if self._engine is None:
            with self.app.app_context():
                self._engine = db.engine
        if self._engine.dialect.name != "postgresql":
            with self.app.app_context():
                write_outcomes(outcomes)
            return
        try:
            if self._connection is None:
                self._connection = self._engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT")
            write_outcomes_postgres(self._connection, outcomes)
        except Exception:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.invalidate()
            raise


def write_outcomes(outcomes: list[Outcome]) -> None:
    """Record outcomes only where our claim still holds (compare-and-set on the lease)."""
    attempts = [outcome.attempt for outcome in outcomes if outcome.attempt]
    if attempts:
        db.session.execute(DeliveryAttempt.__table__.insert(), attempts)
    alerts = Alert.__table__
    by_columns: dict[frozenset, list[dict[str, Any]]] = collections.defaultdict(list)
    for outcome in outcomes:
        by_columns[frozenset(outcome.values)].append(
            {"claimed_id": outcome.alert_id, "claimed_lease": outcome.lease,
             "claimed_until": None, **outcome.values})
    for params in by_columns.values():  # SET takes the parameters' column names
        db.session.execute(alerts.update().where(alerts.c.id == bindparam("claimed_id"),
                                                 alerts.c.claimed_until == bindparam(
                                                     "claimed_lease")), params)
    db.session.commit()


# The same in one statement, for PostgreSQL: one round trip on the writer's own connection.
WRITE_OUTCOMES = text("""
WITH outcome AS (
    SELECT * FROM json_to_recordset(CAST(:outcomes AS json)) AS o(
        id integer, lease timestamp, state varchar, attempt_count integer, set_error boolean,
        last_error text, delivered_at timestamp, next_attempt_at timestamp)
), updated AS (
    UPDATE alerts AS a SET claimed_until = NULL,
        state = COALESCE(o.state, a.state),
        attempt_count = COALESCE(o.attempt_count, a.attempt_count),
        last_error = CASE WHEN o.set_error THEN o.last_error ELSE a.last_error END,
        delivered_at = COALESCE(o.delivered_at, a.delivered_at),
        next_attempt_at = COALESCE(o.next_attempt_at, a.next_attempt_at)
    FROM outcome AS o WHERE a.id = o.id AND a.claimed_until = o.lease
)
INSERT INTO delivery_attempts (alert_id, attempted_at, outcome, http_status, error, duration_ms)
SELECT * FROM json_to_recordset(CAST(:attempts AS json)) AS d(
    alert_id integer, attempted_at timestamp, outcome varchar, http_status integer, error text,
    duration_ms integer)
""")


def write_outcomes_postgres(connection: Connection, outcomes: list[Outcome]) -> None:
    """write_outcomes in one statement, on a connection in autocommit."""
    rows = [{"id": outcome.alert_id, "lease": utc_text(outcome.lease),
             "state": outcome.values.get("state"),
             "attempt_count": outcome.values.get("attempt_count"),
             "set_error": "last_error" in outcome.values,
             "last_error": outcome.values.get("last_error"),
             "delivered_at": utc_text(outcome.values.get("delivered_at")),
             "next_attempt_at": utc_text(outcome.values.get("next_attempt_at"))}
            for outcome in outcomes]
    attempts = [{**outcome.attempt, "attempted_at": utc_text(outcome.attempt["attempted_at"])}
                for outcome in outcomes if outcome.attempt]
    connection.execute(WRITE_OUTCOMES, {"outcomes": json.dumps(rows),
                                        "attempts": json.dumps(attempts)})
