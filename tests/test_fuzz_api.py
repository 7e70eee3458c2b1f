"""§4, §5: schemathesis fuzzes every operation of the live /openapi.json on PostgreSQL.

No answer may be a 5xx (the database is up, so not even a 503), every error is the §5
envelope, and every answer matches the document: its status code, content type and schema.
"""
from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from openapi import build_openapi
from tests.conftest import Client, _truncate_postgres, make_key
from tests.factories import make_error
from tests.helpers import ENVELOPE_KEYS

# Enough to run in well under a minute per key; FUZZ_EXAMPLES=500 digs deeper by hand.
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 25))
FUZZ_SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None,
                         suppress_health_check=list(HealthCheck), print_blob=True)


@pytest.fixture
def database_url(postgres_url) -> str:
    """PostgreSQL only: the production database, and one run is enough for fuzzing."""
    _truncate_postgres(postgres_url)
    return postgres_url


@pytest.fixture
def app_config(app_config) -> dict:
    # POST /channels/<id>/test sends a real request: never let a slow answer stall the run,
    # and never let a test email leave this machine.
    # The database is up: an accepted heartbeat must be stored, never left in the spool.
    return {**app_config, "ALERT_TIMEOUT_SECONDS": 2, "SMTP_URL": "",
            "INGEST_TIMEOUT_SECONDS": 30}


# What JSON Schema cannot say: a cron expression, an IANA time zone, the fields a channel of each
# kind needs, channel ids that must exist. Schema-valid data may rightly be refused with 422 for
# those, but never with 400, 405, 413 or 415. An opaque cursor cannot be made up at all: the
# server refuses every cursor it did not give out (test_pagination.py), so cases go without one.
POSITIVE_DATA_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]


class Seeded:
    """Existing rows, so that fuzzed requests reach past the 404 of a random id."""

    def __init__(self, app, server, sink):
        self.app = app
        self.sink = sink
        self.spool = app.extensions["hbmon"].heartbeat_spool
        self.key = make_key(app, "fuzz operator")
        self.read_only_key = make_key(app, "fuzz reader", read_only=True)
        self.operator = Client(server.url, self.key)
        channel = self.operator.post("/api/v1/channels", json={
            "name": "fuzz sink", "kind": "webhook", "url": sink.url, "secret": "fuzz-secret"})
        assert channel.status_code == 201, channel.text
        self.channel_id = channel.json()["id"]
        self.uuid = self.new_application([self.channel_id])
        failed = self.operator.post(f"/ping/{self.uuid}/fail")
        assert failed.status_code == 200, failed.text
        alerts = self.operator.get("/api/v1/alerts").json()["items"]
        self.alert_id = alerts[0]["id"]
        self.incident_id = alerts[0]["payload"]["incident"]["id"]
        self.ack_token = alerts[0]["payload"]["ack_url"].rsplit("/", 1)[1]
        self.window_id = self.new_window()
        self.error_id = make_error(app, app.extensions["hbmon"].clock.now())

    def new_application(self, channels=()) -> str:
        created = self.operator.post("/api/v1/applications", json={
            "name": "fuzzed", "period_seconds": 60, "channels": list(channels)})
        assert created.status_code == 201, created.text
        return created.json()["uuid"]

    def new_channel(self) -> int:
        created = self.operator.post("/api/v1/channels", json={
            "name": "doomed", "kind": "webhook", "url": self.sink.url})
        assert created.status_code == 201, created.text
        return created.json()["id"]

    def new_window(self) -> int:
        created = self.operator.post("/api/v1/maintenance-windows", json={
            "name": "fuzzed", "starts_at": "2030-01-01T00:00:00Z",
            "ends_at": "2030-01-02T00:00:00Z"})
        assert created.status_code == 201, created.text
        return created.json()["id"]

    def existing(self, name: str, method: str):
        """An id of an existing row for this path parameter; a fresh one for DELETE."""
        if name == "uuid":
            return self.new_application() if method == "DELETE" else self.uuid
        if name == "channel_id":
            return self.new_channel() if method == "DELETE" else self.channel_id
        if name == "window_id":
            return self.new_window() if method == "DELETE" else self.window_id
        return {"alert_id": self.alert_id, "error_id": self.error_id,
                "incident_id": self.incident_id, "token": self.ack_token}.get(name)


@pytest.fixture
def seeded(app, server, sink) -> Seeded:
    return Seeded(app, server, sink)


def documented_operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every operation in the document the app serves, but the console's:
    without a signed-in browser session they all answer the sign-in redirect or 403, which
    test_console.py checks, and with one they are HTML forms, not the API."""
    document = build_openapi()
    return [(method.upper(), path) for path, operations in document["paths"].items()
            for method, operation in operations.items() if "console" not in operation["tags"]]


# Healthchecks' API under /api/v1/ and /api/v2/ is served by the very views that serve it under
# /api/v3/ (test_healthchecks_api.py checks this): fuzzing v3 covers them at a third of the cost.
SERVED_BY_THE_V3_VIEWS = ("/api/v1/checks/", "/api/v1/badges/", "/api/v1/status/", "/api/v2/")
OPERATIONS = [(method, path) for method, path in documented_operations()
              if not path.startswith(SERVED_BY_THE_V3_VIEWS)]


def live_schema(server, key: str):
    """The document as schemathesis reads it from the live server's /openapi.json."""
    config = schemathesis.Config.from_dict({
        "auth": {"openapi": {"bearer": {"bearer": key}}},
        "checks": {"positive_data_acceptance": {"expected-statuses": POSITIVE_DATA_STATUSES}},
    })
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config,
                                         timeout=30)


def keep_alerts_on_this_machine(case, sink_url: str) -> None:
    """A fuzzed webhook URL that the app would accept is pointed at the local sink instead.

    POST /channels/<id>/test sends to the channel's URL: fuzzing must never send traffic to
    whatever host Hypothesis made up.
    """
    if not case.path.startswith("/api/v1/channels") or not isinstance(case.body, dict):
        return
    url = case.body.get("url")
    if isinstance(url, str) and url.lower().startswith(("http://", "https://")):
        case.body["url"] = sink_url


def described(case, response) -> str:
    return (f"{response.status_code} {dict(response.headers)}\n{response.text[:500]}\n"
            f"{case.as_curl_command()}")


def header(response, name: str) -> str:
    """One header of a schemathesis response (which keeps every header as a list)."""
    values = response.headers.get(name.lower()) or [""]
    return values[0]


def assert_error_envelope(response, case) -> None:
    assert response.status_code < 500, described(case, response)
    if response.status_code < 400:
        return
    request_id = header(response, "X-Request-ID")
    assert request_id, described(case, response)
    if case.method.upper() == "HEAD":
        return  # no body to look at
    assert header(response, "Content-Type").startswith("application/json"), \
        described(case, response)
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, described(case, response)
    error = body["error"]
    assert isinstance(error, dict) and set(error) == ENVELOPE_KEYS, described(case, response)
    assert isinstance(error["code"], str) and error["code"], described(case, response)
    assert isinstance(error["message"], str) and error["message"], described(case, response)
    assert isinstance(error["timestamp"], str), described(case, response)
    assert error["request_id"] == request_id, described(case, response)


def error_envelope(ctx, response, case):
    """§5: every 4xx is exactly the five-key envelope carrying the X-Request-ID; no 5xx."""
    assert_error_envelope(response, case)
    return True


def fuzz_operation(operation, seeded: Seeded) -> None:
    """Positive and negative cases of one operation, each checked by the contract."""
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                      operation.as_strategy(GenerationMode.NEGATIVE))

    @FUZZ_SETTINGS
    @given(case=cases, data=st.data())
    def run(case, data):
        for name in case.path_parameters or {}:
            if data.draw(st.booleans(), label=f"existing {name}"):
                value = seeded.existing(name, case.method.upper())
                if value is not None:
                    case.path_parameters[name] = value
        keep_alerts_on_this_machine(case, seeded.sink.url)
        if case.query:
            case.query.pop("cursor", None)
        response = case.call(timeout=30)
        assert_error_envelope(response, case)
        case.validate_response(response, additional_checks=[error_envelope])
        assert seeded.spool.is_empty(), f"a heartbeat the database refused was spooled: " \
                                        f"{case.as_curl_command()}"

    run()


def test_every_operation_of_the_live_document_is_fuzzed(server, seeded):
    paths = live_schema(server, seeded.key).raw_schema["paths"]
    served = [(method.upper(), path) for path, operations in paths.items()
              for method, operation in operations.items() if "console" not in operation["tags"]]
    assert sorted(served) == sorted(documented_operations())
    console = [path for path, operations in paths.items() for operation in operations.values()
               if "console" in operation["tags"]]
    assert console and all(not path.startswith("/api/") for path in console)
    assert all(path.startswith(SERVED_BY_THE_V3_VIEWS) for method, path in
               set(documented_operations()) - set(OPERATIONS))


@pytest.mark.parametrize("read_only", [False, True], ids=["read-write key", "read-only key"])
@pytest.mark.parametrize(("method", "path"), OPERATIONS,
                         ids=[f"{method} {path}" for method, path in OPERATIONS])
def test_operation_keeps_the_contract(server, seeded, method, path, read_only):
    key = seeded.read_only_key if read_only else seeded.key
    fuzz_operation(live_schema(server, key)[path][method], seeded)
