"""The ingest writer's PostgreSQL path: a batch of heartbeats in two round trips.

The general path (heartbeat_monitor.write_heartbeats) goes through the ORM: about six round
trips and a few milliseconds of CPU per batch, all of it in the one writer thread every request
of a process waits on. This path keeps one connection of its own and sends

    BEGIN; EXECUTE lock_applications(uuids)                      -- SELECT … FOR UPDATE
    EXECUTE update_applications(…); EXECUTE insert_heartbeats(…); COMMIT

with the same state rules (heartbeat_monitor.apply_heartbeat) applied in between. The three
statements take whole columns as arrays, so their text never changes with the batch size and
they are prepared once per connection: PostgreSQL then spends nothing on parsing and planning
them. Where prepared statements do not survive (PgBouncer in transaction mode) the same
statements are sent in full instead.

A batch in which some application crosses the up/down boundary (an incident opens or resolves,
alerts are queued) is rolled back and left to the general path: that is rare, and it is where
incidents and alerts are written.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg2
from psycopg2 import errors as pg_errors
from psycopg2.extras import Json
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from exceptions import HeartbeatNotFound
from heartbeat_monitor import Signal, apply_heartbeat, heartbeat_view

# What apply_heartbeat reads; what it only writes needs no reading.
STATE_COLUMNS = ("id", "uuid", "status", "period_seconds", "cron", "timezone", "grace_seconds",
                 "failure_threshold", "consecutive_failures", "last_start_at", "last_start_rid",
                 "next_deadline_at")
WRITTEN_ONLY = ("last_heartbeat_at", "next_check_at", "updated_at")
# What apply_heartbeat may change, and the column types.
CHANGED_COLUMNS = (("status", "varchar"), ("consecutive_failures", "integer"),
                   ("last_heartbeat_at", "timestamp"), ("last_start_at", "timestamp"),
                   ("last_start_rid", "varchar"), ("next_deadline_at", "timestamp"),
                   ("next_check_at", "timestamp"), ("updated_at", "timestamp"))
HEARTBEAT_COLUMNS = (("uuid", "varchar"), ("application_id", "integer"), ("kind", "varchar"),
                     ("exit_code", "integer"), ("message", "text"), ("duration_ms", "integer"),
                     ("metadata", "json"), ("rid", "varchar"), ("source", "varchar"),
                     ("remote_addr", "varchar"), ("user_agent", "varchar"),
                     ("received_at", "timestamp"))
_TIMESTAMPS = {"last_heartbeat_at", "last_start_at", "next_deadline_at", "next_check_at",
               "updated_at"}
_READ_TIMESTAMPS = {"last_start_at", "next_deadline_at"}


class Statement:
    """A statement over array parameters, prepared once per connection or sent in full."""

    def __init__(self, name: str, array_types: list[str], body: str) -> None:
        self.prepare = (f"PREPARE {name}({', '.join(f'{t}[]' for t in array_types)}) AS "
                        + body.format(*(f"${n}" for n in range(1, len(array_types) + 1))))
        typed = [f"%s::{t}[]" for t in array_types]
        self.execute_prepared = f"EXECUTE {name}({', '.join(typed)})"
        self.execute_in_full = body.format(*typed)


LOCK_APPLICATIONS = Statement(
    "hbmon_lock_applications", ["varchar"],
    f"SELECT {', '.join(STATE_COLUMNS)} FROM applications WHERE uuid = ANY({{0}}) "
    "ORDER BY id FOR UPDATE")
UPDATE_APPLICATIONS = Statement(
    "hbmon_update_applications", ["integer"] + [kind for _, kind in CHANGED_COLUMNS],
    "UPDATE applications AS a SET "
    + ", ".join(f"{name} = v.{name}" for name, _ in CHANGED_COLUMNS)
    + " FROM unnest(" + ", ".join(f"{{{n}}}" for n in range(len(CHANGED_COLUMNS) + 1))
    + ") AS v(id, " + ", ".join(name for name, _ in CHANGED_COLUMNS) + ") WHERE a.id = v.id")
INSERT_HEARTBEATS = Statement(
    "hbmon_insert_heartbeats", [kind for _, kind in HEARTBEAT_COLUMNS],
    "INSERT INTO heartbeats (" + ", ".join(name for name, _ in HEARTBEAT_COLUMNS) + ") "
    "SELECT * FROM unnest(" + ", ".join(f"{{{n}}}" for n in range(len(HEARTBEAT_COLUMNS)))
    + ")")
STATEMENTS = (LOCK_APPLICATIONS, UPDATE_APPLICATIONS, INSERT_HEARTBEATS)


class ApplicationState:
    """The columns of one locked application row that the state rules read and change."""

    __slots__ = STATE_COLUMNS + WRITTEN_ONLY

    def __init__(self, row: tuple) -> None:
        for name, value in zip(STATE_COLUMNS, row):
            if name in _READ_TIMESTAMPS and value is not None:
                value = value.replace(tzinfo=dt.timezone.utc)
            setattr(self, name, value)


class HeartbeatRow:
    """A heartbeat as the state rules see it (duration_ms may be filled in)."""

    __slots__ = ("kind", "received_at", "rid", "duration_ms")

    def __init__(self, kind: str, received_at: dt.datetime, rid: str | None,
                 duration_ms: int | None) -> None:
        self.kind, self.received_at, self.rid, self.duration_ms = (kind, received_at, rid,
                                                                   duration_ms)


class NeedsGeneralPath(Exception):
    """The batch changes some application across the up/down boundary."""


def naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    """As the UTC columns store it (see database.UTCDateTime)."""
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None)


class PostgresHeartbeatStore:
    """One writer thread's own connection and its two-round-trip batch write."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.use_prepared = True
        self._connection = None

    def write(self, items: list[tuple[str, Signal]]) -> list[Any]:
        """Results in the order of `items`: the heartbeat's view, or HeartbeatNotFound.

        Raises NeedsGeneralPath (nothing written) when an incident would open or resolve, and
        SQLAlchemy's DBAPIError subclasses for database errors, as the ORM path does.
        """
        try:
            return self._write(items)
        except pg_errors.InvalidSqlStatementName:
            # Not where we prepared them: a pooler hands out server connections per
            # transaction. Nothing was written; send the statements in full from now on.
            self.use_prepared = False
            return self._write(items)

    def _write(self, items: list[tuple[str, Signal]]) -> list[Any]:
        cursor = None
        try:
            cursor = self._cursor()
            cursor.execute("BEGIN; " + self._statement_sql(LOCK_APPLICATIONS),
                           [sorted({uuid for uuid, _ in items})])
            states = {row[1]: ApplicationState(row) for row in cursor.fetchall()}
            results: list[Any] = []
            heartbeats: list[tuple] = []
            changed: dict[int, ApplicationState] = {}
            for application_uuid, signal in items:
                state = states.get(application_uuid)
                if state is None:
                    results.append(HeartbeatNotFound(application_uuid))
                    continue
                heartbeat = HeartbeatRow(signal.kind, signal.received_at, signal.rid,
                                         signal.duration_ms)
                if apply_heartbeat(state, heartbeat) is not None:
                    raise NeedsGeneralPath()
                if signal.kind != "log":
                    changed[state.id] = state
                heartbeats.append((
                    signal.uuid, state.id, signal.kind, signal.exit_code, signal.message,
                    heartbeat.duration_ms,
                    Json(signal.metadata) if signal.metadata is not None else None,
                    signal.rid, signal.source, signal.remote_addr, signal.user_agent,
                    naive_utc(signal.received_at)))
                results.append(heartbeat_view(application_uuid, signal, heartbeat.duration_ms))
            sql, parameters = [], []
            if changed:
                columns = [[state.id for state in changed.values()]] + [
                    [naive_utc(getattr(state, name)) if name in _TIMESTAMPS
                     else getattr(state, name) for state in changed.values()]
                    for name, _ in CHANGED_COLUMNS]
                sql.append(self._statement_sql(UPDATE_APPLICATIONS))
                parameters += columns
            if heartbeats:
                sql.append(self._statement_sql(INSERT_HEARTBEATS))
                parameters += [list(column) for column in zip(*heartbeats)]
            sql.append("COMMIT")
            cursor.execute("; ".join(sql), parameters)
            return results
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

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def _statement_sql(self, statement: Statement) -> str:
        return statement.execute_prepared if self.use_prepared else statement.execute_in_full

    def _cursor(self):
        if self._connection is None:
            fairy = self.engine.raw_connection()
            fairy.detach()  # ours alone, closed (never pooled) when we are done with it
            connection = fairy.dbapi_connection
            connection.autocommit = True  # BEGIN and COMMIT are ours to send
            self._connection = fairy
            if self.use_prepared:
                with connection.cursor() as cursor:
                    cursor.execute("; ".join(statement.prepare for statement in STATEMENTS))
        return self._connection.dbapi_connection.cursor()

    def _roll_back(self) -> None:
        """End the failed transaction; a connection that cannot do even that is dropped."""
        if self._connection is None:
            return
        try:
            with self._connection.dbapi_connection.cursor() as cursor:
                cursor.execute("ROLLBACK")
        except Exception:
            self.close()
