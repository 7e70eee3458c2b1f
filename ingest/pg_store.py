"""The ingest writer's PostgreSQL path: a batch of heartbeats in one or two round trips.

The general path (orm_store.write_heartbeats) goes through the ORM: about six round
trips and a few milliseconds of CPU per batch, all of it in the one writer thread every request
of a process waits on. This path keeps one connection of its own and sends

    BEGIN; EXECUTE lock_applications(uuids)                      -- SELECT … FOR UPDATE
    EXECUTE update_applications(…); EXECUTE insert_heartbeats(…); COMMIT

with the same state rules (status_rules.apply_heartbeat) applied in between. These
statements (and WRITE_OK_PINGS below) take the batch as parameters (the UUIDs as an array,
the rows as JSON arrays of objects), so their text never changes with the batch size and they
are prepared once per connection: PostgreSQL then spends nothing on parsing and planning them.
Where prepared statements do not survive (PgBouncer in transaction mode) the same statements
are sent in full instead.

A batch of plain pings ("ok", the commonest by far) takes one round trip instead: for an
application that is not down and has no run in progress, such a ping's new state depends only
on its time and the schedule, so one statement (WRITE_OK_PINGS) locks the rows, checks that
each application is still in that state, computes the deadlines, updates and inserts, all or
nothing. The writer tries it only for applications it saw in that state at its last write
(and the cron schedule it saw, whose next fire is computed here); when any row no longer
matches (another process changed it), nothing is written and the batch takes the two round
trips.

A batch in which some application crosses the up/down boundary (an incident opens or resolves,
alerts are queued) is rolled back and left to the general path (`write` answers None): that is
rare, and it is where incidents and alerts are written.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import string
from typing import Any

import psycopg2
from psycopg2 import errors as pg_errors
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from database import utc_text
from exceptions import HeartbeatNotFound
from ingest.signals import Signal, heartbeat_view
from models import HEARTBEAT_COLUMNS as HEARTBEAT_COLUMN_NAMES
from models import Heartbeat
from schedule import next_deadline
from status_rules import HeartbeatFacts, apply_heartbeat, stored_kind

# What apply_heartbeat reads; what it only writes needs no reading.
STATE_COLUMNS = ("id", "uuid", "status", "period_seconds", "cron", "timezone", "grace_seconds",
                 "failure_threshold", "consecutive_failures", "last_start_at", "last_start_rid",
                 "next_deadline_at", "next_check_at", "min_duration_seconds",
                 "max_duration_seconds", "manual_resume", "methods")
WRITTEN_ONLY = ("last_heartbeat_at", "updated_at")
# What apply_heartbeat may change, and the column types.
CHANGED_COLUMNS = (("status", "varchar"), ("consecutive_failures", "integer"),
                   ("last_heartbeat_at", "timestamp"), ("last_start_at", "timestamp"),
                   ("last_start_rid", "varchar"), ("next_deadline_at", "timestamp"),
                   ("next_check_at", "timestamp"), ("updated_at", "timestamp"))
# The heartbeat's columns with their PostgreSQL types, as json_to_recordset reads them.
HEARTBEAT_COLUMNS = tuple(
    (name, Heartbeat.__table__.c[name].type.compile(dialect=postgresql.dialect()))
    for name in HEARTBEAT_COLUMN_NAMES)
_TIMESTAMPS = {name for name, kind in CHANGED_COLUMNS if kind == "timestamp"}
_READ_TIMESTAMPS = _TIMESTAMPS.intersection(STATE_COLUMNS)


class Statement:
    """A statement prepared once per connection, or sent in full where that cannot be."""

    def __init__(self, name: str, parameter_types: list[str], body: str) -> None:
        self.prepare = (f"PREPARE {name}({', '.join(parameter_types)}) AS "
                        + body.format(*(f"${n}" for n in range(1, len(parameter_types) + 1))))
        typed = [f"%s::{t}" for t in parameter_types]
        self.execute_prepared = f"EXECUTE {name}({', '.join(typed)})"
        self.execute_in_full = body.format(*typed)
        # Sent in full, a parameter the body names twice, or out of order, is sent again there.
        self._order_in_full = [int(field) for _, field, _, _ in string.Formatter().parse(body)
                               if field is not None]

    def sql_and_parameters(self, values: list[Any], prepared: bool) -> tuple[str, list[Any]]:
        if prepared:
            return self.execute_prepared, values
        return self.execute_in_full, [values[n] for n in self._order_in_full]


def _record_type(columns) -> str:
    return ", ".join(f"{name} {kind}" for name, kind in columns)


LOCK_APPLICATIONS = Statement(
    "hbmon_lock_applications", ["varchar[]"],
    f"SELECT {', '.join(STATE_COLUMNS)} FROM applications WHERE uuid = ANY({{0}}) "
    "ORDER BY id FOR UPDATE")
# Rows travel as one JSON array of objects: json.dumps and PostgreSQL's JSON parser cost a
# fraction of what adapting every value as a separate parameter did.
UPDATE_APPLICATIONS = Statement(
    "hbmon_update_applications", ["json"],
    "UPDATE applications AS a SET "
    + ", ".join(f"{name} = v.{name}" for name, _ in CHANGED_COLUMNS)
    + f" FROM json_to_recordset({{0}}) AS v(id integer, {_record_type(CHANGED_COLUMNS)}) "
    "WHERE a.id = v.id")
INSERT_HEARTBEATS = Statement(
    "hbmon_insert_heartbeats", ["json"],
    f"INSERT INTO heartbeats ({', '.join(name for name, _ in HEARTBEAT_COLUMNS)}) "
    f"SELECT {', '.join(name for name, _ in HEARTBEAT_COLUMNS)} "
    f"FROM json_to_recordset({{0}}) AS h({_record_type(HEARTBEAT_COLUMNS)})")
# The state apply_heartbeat gives an application after an "ok" ping received at w.received_at,
# when it is not down and no run is in progress (so no incident resolves and no duration is
# measured): up, no failures, the next deadline (computed here for a cron schedule, from the
# row's period otherwise) and next_check_at by check_after_heartbeat's rule: the deadline, or
# the current check if that is earlier but in the second half of the wait. An application that
# would ignore a ping (status_rules.stored_kind: paused with manual_resume, or "POST" only and
# a ping of the batch sent otherwise) does not match.
_OK_DEADLINE = ("COALESCE(w.cron_deadline, w.received_at "
                "+ COALESCE(NULLIF(a.period_seconds, 0), 86400) * interval '1 second')")
WRITE_OK_PINGS = Statement(
    "hbmon_write_ok_pings", ["json", "json", "varchar[]"],
    "WITH latest AS ("
    " SELECT * FROM json_to_recordset({1}) AS w(uuid varchar, cron varchar, timezone varchar,"
    " received_at timestamp, cron_deadline timestamp, all_post boolean)),"
    " matched AS ("
    " SELECT a.id, a.uuid, w.received_at, a.next_check_at AS check_at,"
    f" {_OK_DEADLINE} AS deadline FROM applications AS a JOIN latest AS w ON a.uuid = w.uuid"
    " WHERE a.uuid = ANY({2}) AND a.status <> 'down' AND a.last_start_at IS NULL"
    " AND a.cron IS NOT DISTINCT FROM w.cron AND (w.cron IS NULL OR a.timezone = w.timezone)"
    " AND NOT (a.status = 'paused' AND a.manual_resume) AND (a.methods <> 'POST' OR w.all_post)"
    " ORDER BY a.id FOR UPDATE OF a),"
    " verdict AS (SELECT count(*) = cardinality({2}) AS all_matched FROM matched),"
    " updated AS ("
    " UPDATE applications AS a SET status = 'up', consecutive_failures = 0,"
    " last_heartbeat_at = m.received_at, updated_at = m.received_at,"
    " last_start_at = NULL, last_start_rid = NULL, next_deadline_at = m.deadline,"
    " next_check_at = CASE WHEN m.check_at <= m.deadline"
    " AND (m.check_at - m.received_at) * 2 >= m.deadline - m.received_at"
    " THEN m.check_at ELSE m.deadline END"
    " FROM matched AS m, verdict WHERE a.id = m.id AND verdict.all_matched),"
    " inserted AS ("
    f" INSERT INTO heartbeats ({', '.join(name for name, _ in HEARTBEAT_COLUMNS)})"
    " SELECT "
    + ", ".join("m.id" if name == "application_id" else f"h.{name}"
                for name, _ in HEARTBEAT_COLUMNS)
    + " FROM json_to_recordset({0}) AS h(application_uuid varchar, "
    + _record_type(column for column in HEARTBEAT_COLUMNS if column[0] != "application_id")
    + ") JOIN matched AS m ON m.uuid = h.application_uuid, verdict WHERE verdict.all_matched)"
    " SELECT all_matched FROM verdict")
STATEMENTS = (LOCK_APPLICATIONS, UPDATE_APPLICATIONS, INSERT_HEARTBEATS, WRITE_OK_PINGS)
# How many applications' schedules a writer keeps for WRITE_OK_PINGS; past that it forgets
# them all and learns them again from its two-round-trip writes.
MAX_KNOWN_SCHEDULES = 100_000


class LockedApplication:
    """The columns of one locked application row that the state rules read and change."""

    __slots__ = STATE_COLUMNS + WRITTEN_ONLY

    def __init__(self, row: tuple) -> None:
        for name, value in zip(STATE_COLUMNS, row):
            if name in _READ_TIMESTAMPS and value is not None:
                value = value.replace(tzinfo=dt.timezone.utc)
            setattr(self, name, value)

    def changes(self) -> dict[str, Any]:
        """What apply_heartbeat may have changed, as the update statement reads it."""
        changes: dict[str, Any] = {"id": self.id}
        for name, _ in CHANGED_COLUMNS:
            value = getattr(self, name)
            changes[name] = utc_text(value) if name in _TIMESTAMPS else value
        return changes


def _row(view: dict[str, Any]) -> dict[str, Any]:
    """A heartbeat's view (heartbeat_view) as the statements read it: its received_at as text.
    Keys a statement does not name are ignored by json_to_recordset."""
    return {**view, "received_at": utc_text(view["received_at"])}


class PostgresHeartbeatStore:
    """One writer thread's own connection and its one- or two-round-trip batch write."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.use_prepared = True
        self._connection = None
        # Applications last written as not down with no run in progress, by UUID: the cron
        # schedule (expression, time zone) or (None, None) for a period, as then written.
        self._schedules: dict[str, tuple[str | None, str | None]] = {}

    def write(self, items: list[tuple[str, Signal]]) -> list[Any] | None:
        """Results in the order of `items`: the heartbeat's view, or HeartbeatNotFound.

        None, with nothing written, when an incident would open or resolve: the general path
        takes the batch. Database errors raise SQLAlchemy's DBAPIError subclasses, as the ORM
        path does.
        """
        try:
            return self._write_any(items)
        except pg_errors.InvalidSqlStatementName:
            # Not where we prepared them: a pooler hands out server connections per
            # transaction. Nothing was written; send the statements in full from now on.
            self.use_prepared = False
            return self._write_any(items)

    def _write_any(self, items: list[tuple[str, Signal]]) -> list[Any] | None:
        results = self._write_ok_pings(items)
        return self._write(items) if results is None else results

    def _write_ok_pings(self, items: list[tuple[str, Signal]]) -> list[Any] | None:
        """The batch in one statement if it is plain pings of applications known to allow it;
        None, with nothing written, otherwise."""
        latest: dict[str, Signal] = {}
        all_post: dict[str, bool] = {}
        for application_uuid, signal in items:
            # A duration given with the heartbeat may be too short (status_rules).
            if signal.kind != "ok" or signal.duration_ms is not None \
                    or application_uuid not in self._schedules:
                return None
            latest[application_uuid] = signal
            all_post[application_uuid] = all_post.get(application_uuid, True) \
                and signal.method in (None, "POST")
        applications = []
        for application_uuid, signal in latest.items():
            cron, timezone = self._schedules[application_uuid]
            applications.append({
                "uuid": application_uuid, "cron": cron, "timezone": timezone,
                "received_at": utc_text(signal.received_at),
                "cron_deadline": utc_text(next_deadline(None, cron, timezone,
                                                        signal.received_at)) if cron else None,
                "all_post": all_post[application_uuid]})
        views = [heartbeat_view(application_uuid, signal) for application_uuid, signal in items]
        with self._cursor() as cursor:
            cursor.execute(*self._sql_and_parameters(
                WRITE_OK_PINGS, [json.dumps([_row(view) for view in views]),
                                 json.dumps(applications), list(latest)]))
            (all_matched,) = cursor.fetchone()
        if not all_matched:  # another process changed one of them: the two round trips tell
            for application_uuid in latest:
                del self._schedules[application_uuid]
            return None
        return views

    def _write(self, items: list[tuple[str, Signal]]) -> list[Any] | None:
        with self._cursor() as cursor:
            sql, parameters = self._sql_and_parameters(
                LOCK_APPLICATIONS, [sorted({uuid for uuid, _ in items})])
            cursor.execute("BEGIN; " + sql, parameters)
            applications = {row[1]: LockedApplication(row) for row in cursor.fetchall()}
            results: list[Any] = []
            heartbeats: list[dict[str, Any]] = []
            changed: dict[int, LockedApplication] = {}
            for application_uuid, signal in items:
                application = applications.get(application_uuid)
                if application is None:
                    results.append(HeartbeatNotFound(application_uuid))
                    continue
                kind = stored_kind(application, signal.kind, signal.method)
                facts = HeartbeatFacts(kind, signal.received_at, signal.rid, signal.duration_ms)
                if apply_heartbeat(application, facts) is not None:
                    cursor.execute("ROLLBACK")
                    return None
                if kind not in ("log", "ign"):
                    changed[application.id] = application
                view = heartbeat_view(application_uuid, signal, facts.duration_ms, kind)
                heartbeats.append({**_row(view), "application_id": application.id})
                results.append(view)
            changes = [application.changes() for application in changed.values()]
            statements, parameters = [], []
            for statement, values in ((UPDATE_APPLICATIONS, changes),
                                      (INSERT_HEARTBEATS, heartbeats)):
                if values:
                    sql, more = self._sql_and_parameters(statement, [json.dumps(values)])
                    statements.append(sql)
                    parameters += more
            statements.append("COMMIT")
            cursor.execute("; ".join(statements), parameters)
        self._remember_schedules(applications.values())
        return results

    def _remember_schedules(self, applications) -> None:
        if len(self._schedules) > MAX_KNOWN_SCHEDULES:
            self._schedules.clear()
        for application in applications:
            if application.status != "down" and application.last_start_at is None:
                self._schedules[application.uuid] = (
                    (application.cron, application.timezone) if application.cron else (None, None))
            else:
                self._schedules.pop(application.uuid, None)

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def _sql_and_parameters(self, statement: Statement,
                            values: list[Any]) -> tuple[str, list[Any]]:
        return statement.sql_and_parameters(values, self.use_prepared)

    @contextlib.contextmanager
    def _cursor(self):
        """A cursor on our own connection; on any error the transaction is ended (or the
        connection dropped) and database errors are raised as SQLAlchemy's."""
        cursor = None
        try:
            cursor = self._connected().cursor()
            yield cursor
        except BaseException as error:
            if isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError)):
                self.close()  # lost or stalled: a ROLLBACK would only wait again
            else:
                self._roll_back()
            if isinstance(error, pg_errors.InvalidSqlStatementName) and self.use_prepared:
                raise
            if isinstance(error, psycopg2.Error):
                raise sa_exc.DBAPIError.instance(None, None, error, psycopg2.Error) from error
            raise
        finally:
            if cursor is not None:
                cursor.close()

    def _connected(self):
        if self._connection is None:
            fairy = self.engine.raw_connection()
            fairy.detach()  # ours alone, closed (never pooled) when we are done with it
            connection = fairy.dbapi_connection
            connection.autocommit = True  # BEGIN and COMMIT are ours to send
            self._connection = fairy
            if self.use_prepared:
                with connection.cursor() as cursor:
                    cursor.execute("; ".join(statement.prepare for statement in STATEMENTS))
        return self._connection.dbapi_connection

    def _roll_back(self) -> None:
        """End the failed transaction; a connection that cannot do even that is dropped."""
        if self._connection is None:
            return
        try:
            with self._connection.dbapi_connection.cursor() as cursor:
                cursor.execute("ROLLBACK")
        except Exception:
            self.close()
