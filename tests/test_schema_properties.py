"""§3, §4, §5: whatever JSON a client sends, the heartbeat and application schemas either accept
it or answer 422 VALIDATION_ERROR naming each bad field — never a 500, never another shape."""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from models import HEARTBEAT_KINDS
from schemas import MAX_METADATA_BYTES, ONE_YEAR_SECONDS, ApplicationInSchema, HeartbeatInSchema
from tests.helpers import assert_envelope

# PROPERTY_EXAMPLES=2000 digs deeper by hand.
PROPERTY_SETTINGS = settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", 100)), deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                    HealthCheck.too_slow])

# Text as a client may send it: any code point, lone surrogates (JSON \ud800) and NUL included.
TEXT = st.text(st.characters(exclude_categories=()), max_size=30) | st.sampled_from(
    ["", " ", "\x00", "a\ud800b", "\udfff", "é" * 201, "🦆", "Europe/Berlin", "UTC"])
JSON_SCALARS = (st.none() | st.booleans() | st.integers() | TEXT
                | st.floats(allow_nan=False, allow_infinity=False))
JSON = st.recursive(JSON_SCALARS, lambda children: st.lists(children, max_size=3)
                    | st.dictionaries(TEXT, children, max_size=3), max_leaves=8)
# Integers at and beyond every bound the schemas know, up to what no database column holds.
BOUND_INTEGERS = st.sampled_from([
    -2**63 - 1, -2**31, -1, 0, 1, 255, 256, 1000, 1001, ONE_YEAR_SECONDS, ONE_YEAR_SECONDS + 1,
    2**31 - 1, 2**31, 2**63, 2**64, 10**40]) | st.integers()


def near(limit: int) -> st.SearchStrategy[str]:
    """Strings one short of, at, and one past a length limit."""
    return st.integers(limit - 1, limit + 1).map(lambda length: "x" * length)


NOISE = st.one_of(BOUND_INTEGERS, JSON)


def bodies(valid: dict[str, st.SearchStrategy], required: tuple[str, ...] = ()):
    """Objects of three sorts: valid field values only; valid but one field replaced by noise
    (a bound-straddling integer or any JSON); and any subset of the fields, each valid or
    noise, with unknown fields mixed in."""
    valid_bodies = st.fixed_dictionaries(
        {name: valid[name] for name in required},
        optional={name: value for name, value in valid.items() if name not in required})
    one_broken = st.tuples(valid_bodies, st.sampled_from(sorted(valid)), NOISE).map(
        lambda parts: {**parts[0], parts[1]: parts[2]})
    anything = st.tuples(
        st.fixed_dictionaries({}, optional={name: st.one_of(value, NOISE)
                                            for name, value in valid.items()}),
        st.dictionaries(TEXT, JSON, max_size=2)).map(lambda parts: {**parts[1], **parts[0]})
    return st.one_of(valid_bodies, one_broken, anything)


METADATA_NEAR_LIMIT = st.integers(-1, 1).map(
    lambda delta: {"blob": "x" * (MAX_METADATA_BYTES - len('{"blob":""}') + delta)})

HEARTBEAT_BODIES = bodies({
    "status": st.sampled_from(HEARTBEAT_KINDS),
    "message": TEXT | near(10000),
    "duration_ms": st.integers(0, 2**31 - 1),
    "exit_code": st.integers(0, 255),
    "metadata": st.dictionaries(TEXT, JSON, max_size=4) | METADATA_NEAR_LIMIT,
})

APPLICATION_FIELDS = {
    "name": TEXT | near(200),
    "description": TEXT | near(2000),
    "tags": st.lists(st.from_regex(r"\A[A-Za-z0-9_.:-]{1,64}\Z") | TEXT, max_size=51),
    "period_seconds": st.none() | st.integers(1, ONE_YEAR_SECONDS),
    "cron": st.none() | st.sampled_from(
        ["*/5 * * * *", "0 3 * * *", "0 0 29 2 *", "0 0 31 2 *", "61 * * * *", "", "@daily"]),
    "timezone": st.sampled_from(
        ["UTC", "Europe/Berlin", "America/St_Johns", "Mars/Base", "", "../etc/passwd"]),
    "grace_seconds": st.integers(0, ONE_YEAR_SECONDS),
    "failure_threshold": st.integers(1, 1000),
    "channels": st.lists(st.integers(1, 3), max_size=3),
    "uuid": st.uuids().map(str),
}
NEW_APPLICATION_BODIES = bodies(APPLICATION_FIELDS, required=("name",))
APPLICATION_CHANGES = bodies({name: value for name, value in APPLICATION_FIELDS.items()
                              if name != "uuid"})


def assert_accepted_or_field_errors(response, success: int) -> None:
    """Either the success status, or a 422 whose details map field names to message lists."""
    event(f"answered {response.status_code}")
    if response.status_code == success:
        assert isinstance(response.json(), dict)
        return
    error = assert_envelope(response, 422, "VALIDATION_ERROR")
    details = error["details"]
    assert isinstance(details, dict) and details, details
    for name, messages in details.items():
        assert isinstance(name, str)  # as the client sent it, "" included
        assert isinstance(messages, list) and messages, details
        assert all(isinstance(message, str) and message for message in messages), details


@pytest.fixture
def app_config(app_config) -> dict:
    # The database is up: an accepted heartbeat must be stored, never left in the spool.
    return {**app_config, "INGEST_TIMEOUT_SECONDS": 30}


@pytest.fixture
def channel_ids(api, sink) -> list[int]:
    return [api.post("/api/v1/channels", json={"name": "hook", "kind": "webhook",
                                               "url": sink.url}).json()["id"]]


@PROPERTY_SETTINGS
@given(body=HEARTBEAT_BODIES)
def test_any_json_heartbeat_is_accepted_or_refused_field_by_field(anonymous, application, runtime,
                                                                  body):
    response = anonymous.post(f"/api/v1/applications/{application['uuid']}/heartbeats",
                              json=body)
    assert_accepted_or_field_errors(response, 202)
    if response.status_code == 202:
        heartbeat = response.json()
        default = "ok" if body.get("exit_code", 0) == 0 else "fail"  # the exit code says it
        assert heartbeat["kind"] == body.get("status", default)
        assert heartbeat["message"] == body.get("message", "")
        assert runtime.heartbeat_spool.is_empty(), "stored in the spool: the database refused it"


@PROPERTY_SETTINGS
@given(body=NEW_APPLICATION_BODIES)
def test_any_json_application_is_created_or_refused_field_by_field(api, channel_ids, body):
    response = api.post("/api/v1/applications", json=body)
    if response.status_code == 409:  # a generated UUID taken by an earlier example
        assert_envelope(response, 409, "CONFLICT")
        return
    assert_accepted_or_field_errors(response, 201)
    if response.status_code == 201:
        assert response.json()["name"] == body["name"]


@PROPERTY_SETTINGS
@given(body=APPLICATION_CHANGES)
def test_any_json_change_is_applied_or_refused_field_by_field(api, anonymous, application,
                                                              channel_ids, body):
    anonymous.get(f"/ping/{application['uuid']}")  # deadlines are computed from a heartbeat
    response = api.patch(f"/api/v1/applications/{application['uuid']}", json=body)
    assert_accepted_or_field_errors(response, 200)


@settings(max_examples=300, deadline=None)
@given(schema=st.sampled_from([HeartbeatInSchema(), ApplicationInSchema(),
                               ApplicationInSchema(partial=True)]),
       body=st.one_of(HEARTBEAT_BODIES, NEW_APPLICATION_BODIES, APPLICATION_CHANGES))
def test_schemas_load_any_object_or_name_the_bad_fields(schema, body):
    try:
        schema.load(body)
    except ValidationError as error:
        assert isinstance(error.messages, dict) and error.messages
        named = {str(name) for name in error.messages}
        assert named <= {str(name) for name in body} | set(schema.fields) | {"_schema"}
        json.dumps(error.normalized_messages())
