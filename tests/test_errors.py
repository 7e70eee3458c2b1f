"""§5: every error path answers the one envelope, with the right status and code."""
from __future__ import annotations

import logging
import socket

import pytest
from sqlalchemy import select

from database import db
from models import ErrorLog
from tests.conftest import Client, make_key
from tests.helpers import assert_envelope

UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"


def test_unknown_uuid_answers_heartbeat_not_found(anonymous):
    error = assert_envelope(anonymous.get(f"/ping/{UNKNOWN_UUID}"), 404, "HEARTBEAT_NOT_FOUND")
    assert UNKNOWN_UUID in error["details"]


def test_unknown_uuid_on_json_heartbeat_answers_heartbeat_not_found(anonymous):
    response = anonymous.post(f"/api/v1/applications/{UNKNOWN_UUID}/heartbeats", json={})
    assert_envelope(response, 404, "HEARTBEAT_NOT_FOUND")


def test_unknown_application_answers_application_not_found(api):
    assert_envelope(api.get(f"/api/v1/applications/{UNKNOWN_UUID}"), 404,
                    "APPLICATION_NOT_FOUND")


def test_unknown_route_answers_not_found(anonymous):
    assert_envelope(anonymous.get("/no/such/page"), 404, "NOT_FOUND")


def test_wrong_method_answers_method_not_allowed_with_allow_header(anonymous):
    response = anonymous.request("PUT", f"/ping/{UNKNOWN_UUID}")
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response.headers["Allow"]


def test_bad_uuid_syntax_answers_malformed_request(anonymous):
    assert_envelope(anonymous.get("/ping/not-a-uuid"), 400, "MALFORMED_REQUEST")


def test_bad_json_answers_malformed_request(api):
    response = api.post("/api/v1/applications", data='{"name": ',
                        headers={"Content-Type": "application/json"})
    assert_envelope(response, 400, "MALFORMED_REQUEST")


def test_nan_in_json_answers_malformed_request(api):
    response = api.post("/api/v1/applications", data='{"name": "x", "period_seconds": NaN}',
                        headers={"Content-Type": "application/json"})
    assert_envelope(response, 400, "MALFORMED_REQUEST")


def test_non_json_body_answers_unsupported_media_type(api):
    response = api.post("/api/v1/applications", data="name=x",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_invalid_fields_answer_validation_error_with_field_details(api):
    response = api.post("/api/v1/applications",
                        json={"name": "", "period_seconds": 0, "timezone": "Mars/Base"})
    error = assert_envelope(response, 422, "VALIDATION_ERROR")
    assert set(error["details"]) == {"name", "period_seconds", "timezone"}
    assert all(isinstance(messages, list) for messages in error["details"].values())


def test_invalid_list_items_are_named_by_their_path_in_details(api):
    response = api.post("/api/v1/applications",
                        json={"name": "x", "tags": ["db", "not a tag"], "channels": [1, "two"]})
    error = assert_envelope(response, 422, "VALIDATION_ERROR")
    assert set(error["details"]) == {"tags.1", "channels.1"}
    assert all(isinstance(messages, list) and all(isinstance(m, str) for m in messages)
               for messages in error["details"].values())


@pytest.mark.parametrize("method, path, body", [
    ("post", "/api/v1/applications", {"name": "nightly\x00backup"}),
    ("post", "/api/v1/channels", {"name": "ops", "kind": "email",
                                  "addresses": ["ops@example.com"], "headers": {"X\x00": "1"}}),
    ("get", "/api/v1/applications?tag=db%00", None),
    ("get", "/api/v1/errors?error_type=%00", None),
    ("post", "/api/v1/applications", {"name": "backup", "description": "lone \ud800"}),
    ("post", "/api/v1/applications", {"name": "backup", "tags": ["\udfff"]}),
])
def test_unstorable_text_answers_validation_error_not_internal_error(api, method, path, body):
    # PostgreSQL cannot store NUL characters or lone surrogates (JSON escapes like \ud800):
    # these were 500s there.
    error = assert_envelope(api.request(method, path, json=body), 422, "VALIDATION_ERROR")
    assert all(isinstance(messages, list) for messages in error["details"].values())


def test_missing_key_answers_unauthorized(anonymous):
    assert_envelope(anonymous.get("/api/v1/applications"), 401, "UNAUTHORIZED")


def test_wrong_key_answers_unauthorized(server):
    client = Client(server.url, "hbm_deadbeef_not-a-real-key")
    assert_envelope(client.get("/api/v1/applications"), 401, "UNAUTHORIZED")


def test_read_only_key_may_read_but_not_write(app, server):
    reader = Client(server.url, make_key(app, "dashboard", read_only=True))
    assert reader.get("/api/v1/applications").status_code == 200
    response = reader.post("/api/v1/applications", json={"name": "x"})
    assert_envelope(response, 403, "FORBIDDEN")


def test_x_api_key_header_is_accepted(app, server):
    client = Client(server.url)
    client.session.headers["X-Api-Key"] = make_key(app)
    assert client.get("/api/v1/applications").status_code == 200


def test_duplicate_uuid_answers_conflict(api, application):
    response = api.post("/api/v1/applications",
                        json={"name": "twin", "uuid": application["uuid"]})
    assert_envelope(response, 409, "CONFLICT")


def test_body_over_limit_is_refused_before_it_is_read(server):
    """Declares 50 MiB, sends 64 KiB: the 413 must come back without the rest being sent."""
    with socket.create_connection((server.server.server_address[0],
                                   server.server.server_port), timeout=10) as connection:
        connection.sendall((f"POST /ping/{UNKNOWN_UUID} HTTP/1.1\r\nHost: x\r\n"
                            f"Content-Type: text/plain\r\nContent-Length: {50 * 2**20}\r\n\r\n"
                            ).encode() + b"x" * 65536)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b'"code":"PAYLOAD_TOO_LARGE"' in body


def test_chunked_body_over_limit_is_refused(anonymous, application):
    limit = 1024 * 1024

    def chunks():
        for _ in range(limit // 65536 + 4):
            yield b"x" * 65536

    response = anonymous.post(f"/ping/{application['uuid']}", data=chunks())
    assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")


@pytest.fixture
def failing_server(app, serve):
    """The app with one extra route that raises, as a bug would."""

    def explode():
        raise RuntimeError("secret internals /srv/app/models.py SELECT * FROM api_keys")

    app.add_url_rule("/boom", "boom", explode)
    return app, serve(app)


def test_uncaught_exception_answers_internal_error_without_internals(failing_server):
    _, live = failing_server
    error = assert_envelope(Client(live.url).get("/boom"), 500, "INTERNAL_ERROR")
    assert "secret internals" not in str(error)


def test_error_storm_is_one_error_log_row_with_a_count(failing_server):
    app, live = failing_server
    client = Client(live.url)
    request_ids = [client.get("/boom", headers={"X-Request-ID": f"storm-{n}"}).headers["X-Request-ID"]
                   for n in range(3)]
    with app.app_context():
        rows = db.session.execute(select(ErrorLog)).scalars().all()
    assert len(rows) == 1
    row = rows[0]
    assert row.occurrence_count == 3
    assert row.error_type == "RuntimeError"
    assert "Traceback" in row.stack_trace
    assert row.request_id == request_ids[-1] == "storm-2"
    assert row.resolved is False


def test_database_down_answers_database_unavailable_with_retry_after(served_app):
    _, live = served_app(DATABASE_URL="postgresql://postgres@127.0.0.1:9/none",
                         DB_CONNECT_TIMEOUT_SECONDS=1)
    client = Client(live.url, "hbm_00000000_whatever")
    response = client.get("/api/v1/applications")
    assert_envelope(response, 503, "DATABASE_UNAVAILABLE")
    assert int(response.headers["Retry-After"]) > 0


def test_sane_request_id_is_reused_and_insane_one_replaced(anonymous):
    reused = anonymous.get("/nowhere", headers={"X-Request-ID": "abc-123.XY"})
    assert assert_envelope(reused, 404, "NOT_FOUND")["request_id"] == "abc-123.XY"
    replaced = anonymous.get("/nowhere", headers={"X-Request-ID": "<script>" + "x" * 300})
    request_id = assert_envelope(replaced, 404, "NOT_FOUND")["request_id"]
    assert request_id.startswith("req_") and "<" not in request_id


def test_every_log_line_of_a_request_carries_its_request_id(failing_server):
    _, live = failing_server
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Collect()
    logging.getLogger().addHandler(handler)
    try:
        Client(live.url).get("/boom", headers={"X-Request-ID": "trace-me-1"})
    finally:
        logging.getLogger().removeHandler(handler)
    from_request = [r for r in records if r.name in ("error_handlers", "monitoring.error_tracking")]
    assert from_request, "the failing request logged nothing"
    hbmon_handler = next(h for h in logging.getLogger().handlers if getattr(h, "_hbmon", False))
    for record in from_request:
        assert hbmon_handler.filter(record)
        assert record.request_id == "trace-me-1"
