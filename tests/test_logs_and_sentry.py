"""§6.7 and §7: JSON log lines carry their request id and no secret; Sentry gets scrubbed events."""
from __future__ import annotations

import json
import logging

import sentry_sdk
from flask import request

from app import create_app
from database import db
from tests.conftest import Client, LiveServer, make_key
from tests.helpers import wait_until

SMTP_URL = "smtp://mailer:hunter2smtp@127.0.0.1:1"
DATABASE_URL_WITH_PASSWORD = "postgresql://app:dbPassw0rd@db.internal:5432/hbmon"
CHANNEL_SECRET = "whsec_channel_topsecret_42"

log = logging.getLogger("tests.careless")


def careless_app(app_config, **overrides):
    """The app with a route that logs and raises secrets, as careless code might."""
    app = create_app({**app_config, "SMTP_URL": SMTP_URL, **overrides})

    def leak():
        log.info("request headers: %s", dict(request.headers))
        log.warning("database at %s", DATABASE_URL_WITH_PASSWORD)
        log.info("channel saved", extra={"channel": {"url": "https://hooks.example.com/x",
                                                     "secret": CHANNEL_SECRET}})
        raise ConnectionError(f"could not reach {SMTP_URL} nor {DATABASE_URL_WITH_PASSWORD}, "
                              f"secret={CHANNEL_SECRET}")

    app.add_url_rule("/leak", "leak", leak)
    return app


def secrets_of(key: str) -> list[str]:
    return [key, key.split("_", 2)[2], "hunter2smtp", "dbPassw0rd", CHANNEL_SECRET]


def test_json_log_lines_carry_the_request_id_and_no_secret(app_config, capfd):
    app = careless_app(app_config, LOG_FORMAT="json")
    key = make_key(app)
    live = LiveServer(app).start()
    try:
        client = Client(live.url, key)
        assert client.get("/health?password=urlPassw0rd").status_code == 200
        response = client.get("/leak", headers={"X-Request-ID": "leak-1"})
        assert response.status_code == 500
    finally:
        live.stop()
        with app.app_context():
            db.engine.dispose()
    output = capfd.readouterr().err
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    leak_lines = [line for line in lines if line.get("request_id") == "leak-1"]
    messages = " ".join(line["message"] for line in leak_lines)
    assert "request headers" in messages and "database at" in messages
    assert any("exc_info" in line and "ConnectionError" in line["exc_info"]
               for line in leak_lines), "the traceback was not logged"
    assert "[redacted]" in output
    for secret in secrets_of(key) + ["urlPassw0rd"]:
        assert secret not in output, f"{secret!r} leaked into the logs"


def test_text_log_lines_are_scrubbed_too(app_config, capfd):
    app = careless_app(app_config, LOG_FORMAT="text")
    key = make_key(app)
    app.test_client().get("/leak", headers={"Authorization": f"Bearer {key}",
                                            "X-Request-ID": "text-1"})
    output = capfd.readouterr().err
    assert "[text-1] request headers" in output
    for secret in secrets_of(key):
        assert secret not in output, f"{secret!r} leaked into the logs"
    with app.app_context():
        db.engine.dispose()


def test_unexpected_exception_reaches_sentry_tagged_and_scrubbed(app_config, sentry_sink):
    dsn = f"http://dsnPublicKey0123@127.0.0.1:{sentry_sink.port}/1"
    app = careless_app(app_config, SENTRY_DSN=dsn)
    key = make_key(app)
    response = app.test_client().get(
        "/leak?token=urlToken99", headers={"Authorization": f"Bearer {key}",
                                           "X-Api-Key": key, "X-Request-ID": "sentry-1"})
    assert response.status_code == 500
    sentry_sdk.flush(timeout=10)
    # Other envelopes (sessions, client reports) may come first: wait for the event itself.
    wait_until(lambda: sentry_sink.events(), message="no event reached the Sentry sink")
    assert all(path == "/api/1/envelope/" for path, _ in sentry_sink.envelopes)
    events = sentry_sink.events()
    assert len(events) == 1
    event = events[0]
    assert event["tags"]["request_id"] == "sentry-1"
    assert event["exception"]["values"][-1]["type"] == "ConnectionError"
    text = json.dumps(event)
    assert "[redacted]" in text
    for secret in secrets_of(key) + ["urlToken99", "dsnPublicKey0123"]:
        assert secret not in text, f"{secret!r} reached Sentry"
    with app.app_context():
        db.engine.dispose()


def test_sentry_is_off_without_a_dsn(app_config, sentry_sink):
    app = careless_app(app_config)
    assert app.test_client().get("/leak").status_code == 500
    sentry_sdk.flush(timeout=2)
    assert sentry_sink.envelopes == []
    with app.app_context():
        db.engine.dispose()
