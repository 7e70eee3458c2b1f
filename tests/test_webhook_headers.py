"""§6.8: a webhook channel's own headers can neither break, truncate nor smuggle a delivery."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import update

from database import db
from models import Channel
from tests.helpers import assert_envelope
from tests.test_alerts import alerts, make_channel, watched_application

HOSTILE_HEADERS = [
    ("X-Team", "ops\r\nX-Injected: yes"),
    ("X-Team", "ops\nX-Injected: yes"),
    ("X-Team", "nul\x00"),
    ("X-Team", "bell\x07"),
    ("X-Team", "del\x7f"),
    ("X-Team", "not latin-1 \u2603"),
    ("Bad Name", "x"),
    ("Bad:Name", "x"),
    ("X-Team\r\nX-Injected", "x"),
    ("Content-Length", "1"),
    ("content-length", "1"),
    ("Transfer-Encoding", "chunked"),
    ("Host", "internal.example"),
    ("Connection", "close"),
    ("Keep-Alive", "timeout=5"),
    ("TE", "trailers"),
    ("Trailer", "X-Team"),
    ("Upgrade", "websocket"),
    ("Proxy-Authorization", "Basic eA=="),
    ("Expect", "100-continue"),
    ("Content-Type", "text/plain"),
    ("Idempotency-Key", "mine"),
    ("X-Signature", "sha256=forged"),
    ("User-Agent", "mine"),
]


def _refused_fields(response) -> set[str]:
    """The top-level fields a 422 names (`headers.X-Team` is the headers field)."""
    details = assert_envelope(response, 422, "VALIDATION_ERROR")["details"]
    return {path.split(".")[0] for path in details}


@pytest.mark.parametrize("name, value", HOSTILE_HEADERS)
def test_a_hostile_header_is_refused_when_a_channel_is_created_or_changed(api, sink, name,
                                                                          value):
    response = api.post("/api/v1/channels", json={"name": "hook", "kind": "webhook",
                                                  "url": sink.url, "headers": {name: value}})
    assert _refused_fields(response) == {"headers"}
    channel = make_channel(api, name="hook", kind="webhook", url=sink.url)
    response = api.patch(f"/api/v1/channels/{channel['id']}", json={"headers": {name: value}})
    assert _refused_fields(response) == {"headers"}


def test_the_same_header_twice_in_different_case_is_refused(api, sink):
    response = api.post("/api/v1/channels", json={
        "name": "hook", "kind": "webhook", "url": sink.url,
        "headers": {"X-Team": "a", "x-team": "b"}})
    assert_envelope(response, 422, "VALIDATION_ERROR")


def test_ordinary_headers_are_accepted(api, sink):
    channel = make_channel(api, name="hook", kind="webhook", url=sink.url,
                           headers={"Authorization": "Bearer t0ken", "X-Team": "ops\tblue"})
    assert set(channel["headers"]) == {"Authorization", "X-Team"}


def test_a_stored_channel_with_hostile_headers_still_delivers_the_whole_alert(
        app, api, anonymous, sink, runtime, clock):
    channel = make_channel(api, name="hook", kind="webhook", url=sink.url,
                           headers={"X-Team": "ops"})
    with app.app_context():  # written before the checks existed, or by hand
        db.session.execute(update(Channel).where(Channel.id == channel["id"]).values(
            headers={"X-Team": "ops", "Content-Length": "1", "Transfer-Encoding": "chunked",
                     "X-Evil": "a\r\nX-Injected: yes", "Host": "elsewhere.example",
                     "Idempotency-Key": "forged"}))
        db.session.commit()
        db.session.remove()
    watched_application(api, anonymous, [channel["id"]])
    clock.advance(seconds=91)
    assert runtime.monitor.tick() == 1
    runtime.deliverer.drain()

    assert len(sink.received) == 1
    request = sink.received[0]
    payload = json.loads(request["body"])
    assert payload["event"] == "application.down"
    assert int(request["headers"]["Content-Length"]) == len(request["body"])
    assert request["headers"]["Idempotency-Key"] == payload["alert_id"]
    assert request["headers"]["X-Team"] == "ops"
    assert "X-Injected" not in request["headers"] and "X-Evil" not in request["headers"]
    assert request["headers"]["Host"].startswith("127.0.0.1:")
    assert [alert["uuid"] for alert in alerts(api, "delivered")] == [payload["alert_id"]]
