"""Fixtures: a migrated database (SQLite and PostgreSQL), the app served over real HTTP."""
from __future__ import annotations

import os
import shutil
import sys
import threading
import uuid
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest
import requests
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The suite's alert sinks listen on loopback and its clients ping far faster than a cron job:
# the defaults for this process and every server and monitor it starts. The security tests
# (test_security.py) put the real limits and the webhook guard back.
TEST_ENVIRONMENT = {"ALLOW_PRIVATE_WEBHOOK_TARGETS": "1", "PING_RATE_LIMIT": "1000000/minute",
                    "PING_CLIENT_RATE_LIMIT": "1000000/minute",
                    "API_RATE_LIMIT": "1000000/minute", "LOGIN_RATE_LIMIT": "1000/minute"}
for _name, _value in TEST_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)

from app import create_app  # noqa: E402
from auth import create_api_key  # noqa: E402
from database import db  # noqa: E402
from utils.clock import ManualClock  # noqa: E402

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL",
                                   "postgresql://postgres@127.0.0.1:5432/postgres")


def pytest_sessionstart(session):
    try:
        psycopg2.connect(_dsn(TEST_DATABASE_URL), connect_timeout=3).close()
    except psycopg2.OperationalError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
        pytest.exit(f"PostgreSQL is not reachable at TEST_DATABASE_URL={TEST_DATABASE_URL}: "
                    f"{reason}", returncode=3)


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def migrate(url: str) -> None:
    """Build the schema the way production does: by running the Alembic migrations."""
    from flask_migrate import upgrade
    app = create_app({"DATABASE_URL": url, "MONITOR_ENABLED": False, "LOG_FORMAT": "text"})
    with app.app_context():
        upgrade()
        db.engine.dispose()


class PostgresDatabases:
    """Creates databases on the test server and drops them all at the end."""

    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        self.created: list[str] = []

    def _admin(self, statement: str) -> None:
        """Run one statement, again if the app's I/O timeout (installed process-wide by
        create_app) cuts it short: CREATE and DROP DATABASE can outlast it on a busy machine.
        The cut statement may still finish on the server, so a retry may find it done."""
        for attempt in range(10):
            connection = None
            try:
                connection = psycopg2.connect(_dsn(self.admin_url))
                connection.autocommit = True
                with connection.cursor() as cursor:
                    cursor.execute(statement)
                return
            except psycopg2.errors.DuplicateDatabase:
                return  # an earlier, cut-short CREATE went through
            except psycopg2.OperationalError:
                if attempt == 9:
                    raise
            finally:
                if connection is not None:
                    connection.close()

    def create(self) -> str:
        name = f"hbmon_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._admin(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        for name in self.created:
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_databases():
    databases = PostgresDatabases(TEST_DATABASE_URL)
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def postgres_url(postgres_databases) -> str:
    """One migrated PostgreSQL database shared by the session; tables are emptied per test."""
    url = postgres_databases.create()
    migrate(url)
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


def _truncate_postgres(url: str) -> None:
    connection = psycopg2.connect(_dsn(url))
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                       "AND tablename <> 'alembic_version'")
        tables = ", ".join(f'"{row[0]}"' for row in cursor.fetchall())
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        # Heartbeats' daily partitions too: what a test's clock made, the next one does not see.
        cursor.execute("SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c "
                       "ON c.oid = i.inhrelid WHERE i.inhparent = 'heartbeats'::regclass "
                       "AND c.relname <> 'heartbeats_default'")
        for (partition,) in cursor.fetchall():
            cursor.execute(f'DROP TABLE "{partition}"')
    connection.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A freshly migrated, empty database: each test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "heartbeat.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    _truncate_postgres(url)
    return url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def app_config(database_url, clock, tmp_path) -> dict:
    # Tests step a manual clock between ticks as if the monitor had run all along: an outage
    # gap only past 30 s of it (the default, three monitor intervals, would see one in most).
    return {"DATABASE_URL": database_url, "MONITOR_ENABLED": False, "CLOCK": clock,
            "SPOOL_DIR": str(tmp_path / "spool"), "LOG_FORMAT": "text",
            "OUTAGE_GAP_SECONDS": 30}


@pytest.fixture
def make_app(app_config):
    """Builds apps on this test's database, `app_config` with overrides; closes each after."""
    made = []

    def build(**overrides):
        application = create_app({**app_config, **overrides})
        made.append(application)
        return application
    yield build
    for application in reversed(made):
        close_app(application)


@pytest.fixture
def app(make_app):
    return make_app()


def close_app(application) -> None:
    """Stop an app's threads and close its database connections."""
    application.extensions["hbmon"].shutdown()
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


class LiveServer:
    """The app served by a real threaded WSGI server on a free loopback port."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def start(self) -> "LiveServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    """Serves apps over real HTTP; every server is stopped after the test."""
    started = []

    def start(application) -> LiveServer:
        live = LiveServer(application).start()
        started.append(live)
        return live
    yield start
    for live in started:
        live.stop()


@pytest.fixture
def served_app(make_app, serve):
    """An app with settings overridden, served: `app, live = served_app(PING_RATE_LIMIT=...)`."""
    def start(**overrides):
        application = make_app(**overrides)
        return application, serve(application)
    return start


@pytest.fixture
def server(app, serve):
    return serve(app)


class Client:
    """A requests session bound to the live server, optionally with an API key."""

    def __init__(self, base_url: str, key: str | None = None):
        self.base_url = base_url
        self.session = requests.Session()
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, self.base_url + path, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def patch(self, path, **kwargs):
        return self.request("PATCH", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)


def make_key(app, name: str = "test", read_only: bool = False) -> str:
    with app.app_context():
        _, plaintext = create_api_key(name, read_only, app.extensions["hbmon"].clock.now())
        db.session.remove()
    return plaintext


@pytest.fixture
def api(app, server) -> Client:
    """An operator with a read-write key."""
    return Client(server.url, make_key(app, "operator"))


@pytest.fixture
def anonymous(server) -> Client:
    """A client without a key: applications pinging, or an intruder."""
    return Client(server.url)


@pytest.fixture
def application(api) -> dict:
    """A created application, as the API returned it."""
    response = api.post("/api/v1/applications",
                        json={"name": "nightly-backup", "period_seconds": 3600,
                              "grace_seconds": 300, "tags": ["db", "nightly"]})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def runtime(app):
    """The app's clock, monitor, deliverer and breakers."""
    return app.extensions["hbmon"]


@pytest.fixture
def sink():
    from tests.sinks import HttpSink
    live = HttpSink().start()
    yield live
    live.stop()


@pytest.fixture
def other_sink():
    from tests.sinks import HttpSink
    live = HttpSink().start()
    yield live
    live.stop()


@pytest.fixture
def smtp_sink():
    from tests.sinks import SmtpSink
    live = SmtpSink().start()
    yield live
    live.stop()


@pytest.fixture
def sentry_sink():
    """A stand-in for Sentry's ingestion endpoint; the SDK is reset to no DSN afterwards."""
    import sentry_sdk

    from tests.sinks import SentrySink
    sink = SentrySink()
    yield sink
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # back to a client without a DSN: later tests send nothing
    sink.server.shutdown()
