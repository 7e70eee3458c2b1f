"""Database extension objects, engine options and column types shared by the models."""
from __future__ import annotations

import datetime as dt
import select

import psycopg2
from flask import g
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from psycopg2 import extensions as pg_extensions
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.types import DateTime, TypeDecorator

from config import Settings
from exceptions import DatabaseUnavailable
from runtime import current_runtime

db = SQLAlchemy()
migrate = Migrate()


def naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    """An aware datetime as the UTC columns store it: naive, in UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None)


def utc_text(value: dt.datetime | None) -> str | None:
    """As the UTC columns store it (naive_utc), in ISO 8601: for rows sent as JSON."""
    return None if value is None else naive_utc(value).isoformat()


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, always returns timezone-aware UTC, on SQLite and PostgreSQL alike."""

    impl = DateTime
    cache_ok = True

    @property
    def python_type(self) -> type:
        return dt.datetime

    def process_bind_param(self, value, dialect):
        return naive_utc(value)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc)


def engine_options(settings: Settings) -> dict:
    """Pooling with pre-ping; short connect timeouts so an outage is noticed quickly."""
    if settings.is_sqlite:
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    return {
        "pool_pre_ping": True,
        "pool_size": 10,
        "max_overflow": 10,
        "pool_timeout": settings.DB_CONNECT_TIMEOUT_SECONDS + 1,
        "pool_recycle": 1800,
        # ORM flushes of several rows (a heartbeat batch's applications) in one round trip.
        "executemany_mode": "values_plus_batch",
        "connect_args": {
            "connect_timeout": settings.DB_CONNECT_TIMEOUT_SECONDS,
            # A stalled server must not hang a request forever.
            "options": "-c statement_timeout=15000 -c idle_in_transaction_session_timeout=30000",
            "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 2,
        },
    }


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    if type(dbapi_connection).__module__ != "sqlite3":
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def is_connection_error(error: BaseException) -> bool:
    """True when the error means the database could not be reached (not a bad query)."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        return True
    if isinstance(error, sa_exc.TimeoutError):  # pool exhausted while the server is stalled
        return True
    return False


def refuse_while_database_down() -> None:
    """Management requests: 503 at once while the database is known to be down (§6.6), rather
    than waiting on it; the answer of a request let through tells the breaker how it went."""
    if not current_runtime().db_breaker.allow():
        raise DatabaseUnavailable("The database could not be reached; retry shortly.")
    g.database_probe = True


def dialect_name() -> str:
    return db.engine.dialect.name


def install_io_timeout(seconds: float) -> None:
    """Bound every wait on a PostgreSQL socket, so a stalled server fails fast, never hangs.

    psycopg2 otherwise blocks in libpq without limit when the server (or the network) stops
    answering. With a wait callback, libpq runs non-blocking and we select() with a timeout;
    the error raised reads as a lost connection, so SQLAlchemy invalidates the connection.
    """
    def wait_with_timeout(connection) -> None:
        while True:
            state = connection.poll()
            if state == pg_extensions.POLL_OK:
                return
            if state == pg_extensions.POLL_READ:
                ready = select.select([connection.fileno()], [], [], seconds)[0]
            elif state == pg_extensions.POLL_WRITE:
                ready = select.select([], [connection.fileno()], [], seconds)[1]
            else:
                raise psycopg2.OperationalError(f"bad poll state: {state}")
            if not ready:
                raise psycopg2.OperationalError(
                    f"could not receive data from server: no answer in {seconds:g} s")

    pg_extensions.set_wait_callback(wait_with_timeout)
