"""The ingest writer's PostgreSQL path: a batch of heartbeats in two round trips.

The general path (heartbeat_monitor.write_heartbeats) goes through the ORM: about six round
trips and a few milliseconds of CPU per batch, all of it in the one writer thread every request
of a process waits on. This path keeps one connection of its own and sends

    BEGIN; SELECT … FROM applications WHERE uuid IN (…) ORDER BY id FOR UPDATE
    UPDATE applications … FROM (VALUES …); INSERT INTO heartbeats … VALUES …; COMMIT

with the same state rules (heartbeat_monitor.apply_heartbeat) applied in between. A batch in
which some application crosses the up/down boundary (an incident opens or resolves, alerts are
queued) is rolled back and left to the general path: that is rare, and it is where incidents
and alerts are written.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg2
from psycopg2.extras import Json
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from exceptions import HeartbeatNotFound
from heartbeat_monitor import Signal, apply_heartbeat, heartbeat_view

STATE_COLUMNS = ("id", "uuid", "status", "period_seconds", "cron", "timezone", "grace_seconds",
                 "failure_threshold", "consecutive_failures", "last_heartbeat_at",
                 "last_start_at", "last_start_rid", "next_deadline_at", "next_check_at",
                 "updated_at")
# What apply_heartbeat may change, with the types PostgreSQL needs to read NULLs in VALUES.
CHANGED_COLUMNS = (("status", "varchar"), ("consecutive_failures", "integer"),
                   ("last_heartbeat_at", "timestamp"), ("last_start_at", "timestamp"),
                   ("last_start_rid", "varchar"), ("next_deadline_at", "timestamp"),
                   ("next_check_at", "timestamp"), ("updated_at", "timestamp"))
HEARTBEAT_COLUMNS = ("uuid", "application_id", "kind", "exit_code", "message", "duration_ms",
                     "metadata", "rid", "source", "remote_addr", "user_agent", "received_at")
_TIMESTAMPS = {"last_heartbeat_at", "last_start_at", "next_deadline_at", "next_check_at",
               "updated_at"}

SELECT_STATE = (f"BEGIN; SELECT {', '.join(STATE_COLUMNS)} FROM applications "
                "WHERE uuid IN %s ORDER BY id FOR UPDATE")
UPDATE_STATE = (
    f"UPDATE applications AS a SET "
    f"{', '.join(f'{name} = v.{name}' for name, _ in CHANGED_COLUMNS)} "
    f"FROM (VALUES {{rows}}) AS v(id, {', '.join(name for name, _ in CHANGED_COLUMNS)}) "
    "WHERE a.id = v.id;").encode()
UPDATE_ROW = "(%s::integer, " + ", ".join(f"%s::{kind}" for _, kind in CHANGED_COLUMNS) + ")"
INSERT_HEARTBEATS = (f"INSERT INTO heartbeats ({', '.join(HEARTBEAT_COLUMNS)}) "
                     "VALUES {rows};").encode()
INSERT_ROW = "(" + ", ".join(["%s"] * len(HEARTBEAT_COLUMNS)) + ")"


class ApplicationState:
    """The columns of one locked application row that the state rules read and change."""

    __slots__ = STATE_COLUMNS

    def __init__(self, row: tuple) -> None:
        for name, value in zip(STATE_COLUMNS, row):
            if name in _TIMESTAMPS and value is not None:
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
        self._connection = None

    def write(self, items: list[tuple[str, Signal]]) -> list[Any]:
        """Results in the order of `items`: the heartbeat's view, or HeartbeatNotFound.

        Raises NeedsGeneralPath (nothing written) when an incident would open or resolve, and
        SQLAlchemy's DBAPIError subclasses for database errors, as the ORM path does.
        """
        cursor = None
        try:
            cursor = self._cursor()
            cursor.execute(SELECT_STATE, (tuple(sorted({uuid for uuid, _ in items})),))
            states = {row[1]: ApplicationState(row) for row in cursor.fetchall()}
            results: list[Any] = []
            heartbeat_rows: list[bytes] = []
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
                heartbeat_rows.append(cursor.mogrify(INSERT_ROW, (
                    signal.uuid, state.id, signal.kind, signal.exit_code, signal.message,
                    heartbeat.duration_ms,
                    Json(signal.metadata) if signal.metadata is not None else None,
                    signal.rid, signal.source, signal.remote_addr, signal.user_agent,
                    naive_utc(signal.received_at))))
                results.append(heartbeat_view(application_uuid, signal, heartbeat.duration_ms))
            statements = []
            if changed:
                rows = b", ".join(cursor.mogrify(UPDATE_ROW, (state.id, *(
                    naive_utc(getattr(state, name)) if name in _TIMESTAMPS
                    else getattr(state, name) for name, _ in CHANGED_COLUMNS)))
                    for state in changed.values())
                statements.append(UPDATE_STATE.replace(b"{rows}", rows))
            if heartbeat_rows:
                statements.append(INSERT_HEARTBEATS.replace(
                    b"{rows}", b", ".join(heartbeat_rows)))
            statements.append(b"COMMIT")
            cursor.execute(b" ".join(statements))
            return results
        except BaseException as error:
            if isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError)):
                self.close()  # lost or stalled: a ROLLBACK would only wait again
            else:
                self._roll_back()
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

    def _cursor(self):
        if self._connection is None:
            fairy = self.engine.raw_connection()
            fairy.detach()  # ours alone, closed (never pooled) when we are done with it
            fairy.dbapi_connection.autocommit = True  # BEGIN and COMMIT are ours to send
            self._connection = fairy
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
