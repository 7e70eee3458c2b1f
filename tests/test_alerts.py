"""§6.4: alerts reach real destinations at least once, survive failures, never double."""
from __future__ import annotations

import collections
import email
import email.policy
import hashlib
import hmac
import json
import threading

import pytest

from applications import create_application
from channels import create_channel
from config import Settings
from ingest.orm_store import record_heartbeat
from ingest.signals import Signal
from tests.conftest import Client, close_app, make_key
from tests.faults import free_port
from tests.helpers import assert_envelope, wait_until
from transports import Attempt, Destination, Transports


def make_channel(api, **fields) -> dict:
    response = api.post("/api/v1/channels", json=fields)
    assert response.status_code == 201, response.text
    return response.json()


def watched_application(api, anonymous, channel_ids, **fields) -> dict:
    body = {"name": "payroll", "period_seconds": 60, "grace_seconds": 30,
            "channels": channel_ids, **fields}
    created = api.post("/api/v1/applications", json=body)
    assert created.status_code == 201, created.text
    app = created.json()
    assert anonymous.get(f"/ping/{app['uuid']}").status_code == 200
    return app


def alerts(api, state=None) -> list[dict]:
    query = f"?state={state}" if state else ""
    return api.get(f"/api/v1/alerts{query}").json()["items"]


@pytest.mark.parametrize("is_operator", [True, False])
def test_channel_is_created_with_its_operator_flag(api, sink, is_operator):
    # Sending the flag at creation answered 500 (the field was passed twice).
    channel = make_channel(api, name="ops", kind="webhook", url=sink.url, is_operator=is_operator)
    assert channel["is_operator"] is is_operator
    assert api.get(f"/api/v1/channels/{channel['id']}").json()["is_operator"] is is_operator


def test_down_alert_is_delivered_to_a_webhook_with_idempotency_key_and_signature(
        api, anonymous, sink, runtime, clock):
    channel = make_channel(api, name="ops hook", kind="webhook", url=sink.url,
                           secret="s3cret-signing-key", headers={"X-Team": "ops"})
    app = watched_application(api, anonymous, [channel["id"]])
    clock.advance(seconds=91)
    assert runtime.monitor.tick() == 1
    runtime.deliverer.drain()

    assert len(sink.received) == 1
    request = sink.received[0]
    payload = request["json"]
    assert payload["event"] == "application.down"
    assert payload["application"] == {
        "uuid": app["uuid"], "name": "payroll", "status": "down",
        "last_heartbeat_at": "2030-01-01T00:00:00Z",
        "schedule": {"period_seconds": 60, "cron": None, "timezone": "UTC", "grace_seconds": 30,
                     "text": "every 1 min, grace 30 s"},
        "url": f"http://127.0.0.1:5000/applications/{app['uuid']}"}
    assert payload["last_heartbeat"] == {"kind": "ok", "received_at": "2030-01-01T00:00:00Z",
                                         "exit_code": None, "message": "",
                                         "message_truncated": False}
    assert payload["incident"]["reason"] == "missed"
    assert payload["incident"]["started_at"] == "2030-01-01T00:01:31Z"
    assert payload["incident"]["resolved_at"] is None
    assert request["headers"]["Idempotency-Key"] == payload["alert_id"]
    assert request["headers"]["X-Team"] == "ops"
    expected = hmac.new(b"s3cret-signing-key", request["body"], hashlib.sha256).hexdigest()
    assert request["headers"]["X-Signature"] == f"sha256={expected}"
    delivered = alerts(api, "delivered")
    assert [a["uuid"] for a in delivered] == [payload["alert_id"]]


def test_recovery_sends_application_up_to_the_same_channels(api, anonymous, sink, runtime,
                                                            clock):
    channel = make_channel(api, name="hook", kind="webhook", url=sink.url)
    app = watched_application(api, anonymous, [channel["id"]])
    anonymous.get(f"/ping/{app['uuid']}/fail")
    clock.advance(seconds=5)
    anonymous.get(f"/ping/{app['uuid']}")
    runtime.deliverer.drain()
    events = [r["json"]["event"] for r in sink.received]
    assert sorted(events) == ["application.down", "application.up"]
    up = next(r["json"] for r in sink.received if r["json"]["event"] == "application.up")
    assert up["incident"]["reason"] == "failed"
    assert up["incident"]["resolved_at"] == "2030-01-01T00:00:05Z"
    incidents = api.get(f"/api/v1/applications/{app['uuid']}/incidents").json()["items"]
    assert [(i["reason"], i["resolved_at"]) for i in incidents] == [
        ("failed", "2030-01-01T00:00:05Z")]


def test_slack_channel_gets_a_readable_message(api, anonymous, sink, runtime):
    channel = make_channel(api, name="slack", kind="slack", url=sink.url)
    host = sink.url.split("/")[2]
    assert channel["url"] == f"http://{host}/…hook"  # the webhook URL is itself a secret
    app = watched_application(api, anonymous, [channel["id"]])
    anonymous.get(f"/ping/{app['uuid']}/fail")
    runtime.deliverer.drain()
    assert sink.received[0]["json"]["text"] == "payroll is DOWN (failed)"


def test_email_alert_reaches_a_real_smtp_server(make_app, serve, smtp_sink):
    application = make_app(SMTP_URL=smtp_sink.url, SMTP_FROM="monitor@example.test")
    live = serve(application)
    api = Client(live.url, make_key(application))
    channel = make_channel(api, name="mail", kind="email",
                           addresses=["oncall@example.test", "boss@example.test"])
    app = watched_application(api, Client(live.url), [channel["id"]])
    Client(live.url).get(f"/ping/{app['uuid']}/fail")
    application.extensions["hbmon"].deliverer.drain()
    assert len(smtp_sink.messages) == 1
    envelope = smtp_sink.messages[0]
    assert envelope.mail_from == "monitor@example.test"
    assert sorted(envelope.rcpt_tos) == ["boss@example.test", "oncall@example.test"]
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert message["Subject"] == "payroll is DOWN (failed)"
    assert app["uuid"] in message.get_body(("plain",)).get_content()


def test_429_retry_after_is_honored_up_to_the_breaker_recovery_time(
        make_app, serve, sink, clock):
    application = make_app(BREAKER_RECOVERY_SECONDS=300)
    live = serve(application)
    api, anonymous = Client(live.url, make_key(application)), Client(live.url)
    runtime = application.extensions["hbmon"]
    sink.then({"status": 429, "headers": {"Retry-After": "120"}})
    channel = make_channel(api, name="hook", kind="webhook", url=sink.url)
    app = watched_application(api, anonymous, [channel["id"]])
    anonymous.get(f"/ping/{app['uuid']}/fail")
    runtime.deliverer.drain()
    assert sink.received == []
    pending = alerts(api, "pending")
    assert len(pending) == 1 and pending[0]["attempt_count"] == 1
    assert pending[0]["next_attempt_at"] >= "2030-01-01T00:02:00Z"

    clock.advance(seconds=119)
    runtime.deliverer.drain()
    assert sink.received == []
    clock.advance(seconds=2)
    runtime.deliverer.drain()
    assert len(sink.received) == 1
    detail = api.get(f"/api/v1/alerts/{pending[0]['id']}").json()
    assert [(a["outcome"], a["http_status"]) for a in detail["attempts"]] == [
        ("transient_error", 429), ("delivered", 200)]

    # A longer Retry-After is honoured up to the recovery time (SPEC §6.4a), not beyond.
    sink.then({"status": 429, "headers": {"Retry-After": "3600"}})
    second = watched_application(api, anonymous, [channel["id"]], name="second")
    anonymous.get(f"/ping/{second['uuid']}/fail")
    runtime.deliverer.drain()
    [waiting] = alerts(api, "pending")
    assert waiting["next_attempt_at"] == "2030-01-01T00:07:01Z"  # 300 s, not 3600


def test_5xx_is_retried_with_backoff_until_delivered_once(api, anonymous, sink, runtime, clock):
    sink.then(503, 502, 500)
    channel = make_channel(api, name="hook", kind="webhook", url=sink.url)
    app = watched_application(api, anonymous, [channel["id"]])
    anonymous.get(f"/ping/{app['uuid']}/fail")
    for _ in range(10):
        runtime.deliverer.drain()
        clock.advance(seconds=700)  # more than the longest backoff
    assert len(sink.received) == 1
    [alert] = alerts(api)
    assert alert["state"] == "delivered" and alert["attempt_count"] == 4


def test_4xx_fails_fast_without_retry(api, anonymous, sink, runtime, clock):
    sink.then(404)
    channel = make_channel(api, name="hook", kind="webhook", url=sink.url)
    app = watched_application(api, anonymous, [channel["id"]])
    anonymous.get(f"/ping/{app['uuid']}/fail")
    runtime.deliverer.drain()
    clock.advance(seconds=3600)
    runtime.deliverer.drain()
    [alert] = alerts(api)
    assert alert["state"] == "failed" and alert["attempt_count"] == 1
    assert "404" in alert["last_error"]
    assert runtime.breakers.get(f"channel:{channel['id']}").failure_count == 0


def test_undeliverable_alert_becomes_dead_and_can_be_retried(api, anonymous, sink, runtime,
                                                            clock):
    sink.default = 503
    channel = make_channel(api, name="hook", kind="webhook", url=sink.url)
    app = watched_application(api, anonymous, [channel["id"]])
    anonymous.get(f"/ping/{app['uuid']}/fail")
    for _ in range(30):
        runtime.deliverer.drain()
        clock.advance(seconds=3600)
    [alert] = alerts(api)
    assert alert["state"] == "dead"
    assert sink.received == []

    sink.default = 200
    retried = api.post(f"/api/v1/alerts/{alert['id']}/retry")
    assert retried.status_code == 200 and retried.json()["state"] == "pending"
    clock.advance(seconds=3600)  # past any open breaker
    runtime.deliverer.drain()
    assert sink.alert_ids() == [alert["uuid"]]
    assert_envelope(api.post(f"/api/v1/alerts/{alert['id']}/retry"), 409, "CONFLICT")


def test_breaker_opens_after_threshold_then_closes_through_one_probe(api, anonymous, sink,
                                                                      runtime, clock):
    sink.default = 503
    channel = make_channel(api, name="hook", kind="webhook", url=sink.url)
    for n in range(8):
        watched_application(api, anonymous, [channel["id"]], name=f"job-{n}")
    for created in api.get("/api/v1/applications").json()["items"]:
        anonymous.get(f"/ping/{created['uuid']}/fail")
    runtime.deliverer.drain()
    breaker = runtime.breakers.get(f"channel:{channel['id']}")
    assert breaker.state == "open"
    attempts_when_open = sum(a["attempt_count"] for a in alerts(api))
    # The threshold, plus at most the one call already in flight on the channel's second slot.
    assert 5 <= attempts_when_open <= 6

    clock.advance(seconds=29)
    runtime.deliverer.drain()
    assert breaker.state == "open"
    assert sum(a["attempt_count"] for a in alerts(api)) == attempts_when_open
    clock.advance(seconds=2)
    assert breaker.state == "half_open"  # by the clock, without a call
    sink.default = 200
    clock.advance(seconds=700)
    runtime.deliverer.drain()
    assert breaker.state == "closed"
    assert sorted(sink.alert_ids()) == sorted(a["uuid"] for a in alerts(api))
    assert len(sink.alert_ids()) == 8


def test_closing_an_app_without_background_threads_stops_its_delivery_threads(
        app, api, anonymous, sink):
    channel = make_channel(api, name="hook", kind="webhook", url=sink.url)
    watched = watched_application(api, anonymous, [channel["id"]])
    anonymous.get(f"/ping/{watched['uuid']}/fail")
    deliverer = app.extensions["hbmon"].deliverer  # MONITOR_ENABLED off: driven by drain()
    deliverer.drain()
    senders = list(deliverer._pools["webhook"]._threads)
    close_app(app)
    assert len(sink.alert_ids()) == 1
    assert senders and not any(thread.is_alive() for thread in senders)


def test_failing_channel_does_not_delay_a_healthy_one(make_app, serve, sink, other_sink):
    application = make_app(ALERT_TIMEOUT_SECONDS=3)
    live = serve(application)
    api, anonymous = Client(live.url, make_key(application)), Client(live.url)
    sink.default = {"status": 200, "hang": 3}
    slow = make_channel(api, name="slow", kind="webhook", url=sink.url)
    fast = make_channel(api, name="fast", kind="webhook", url=other_sink.url)
    for n in range(6):
        app = watched_application(api, anonymous, [slow["id"], fast["id"]], name=f"j{n}")
        anonymous.get(f"/ping/{app['uuid']}/fail")
    deliverer = application.extensions["hbmon"].deliverer
    stop = threading.Event()
    worker = threading.Thread(target=deliverer.run, args=(stop, 0.05))
    worker.start()
    try:
        # Six hanging deliveries to the slow channel would take 6 x 3 s in series; the healthy
        # channel's six alerts arrive while the first slow ones are still hanging.
        fast_done = wait_until(lambda: len(other_sink.received) >= 6, timeout_seconds=2.5)
    finally:
        stop.set()
        deliverer.wake()
        worker.join()
    assert len(other_sink.received) == 6, fast_done


def test_channels_crud_and_test_endpoint(api, sink):
    created = make_channel(api, name="hook", kind="webhook", url=sink.url, secret="abcdefgh12",
                           headers={"Authorization": "Bearer token-123"})
    assert created["has_secret"] is True and "secret" not in created
    assert created["headers"] == {"Authorization": "********"}
    assert "token-123" not in json.dumps(api.get("/api/v1/channels").json())

    result = api.post(f"/api/v1/channels/{created['id']}/test").json()
    assert result["delivered"] is True and result["http_status"] == 200
    assert sink.received[0]["json"]["event"] == "channel.test"

    sink.then(500)
    failed = api.post(f"/api/v1/channels/{created['id']}/test").json()
    assert failed["delivered"] is False and failed["http_status"] == 500

    patched = api.patch(f"/api/v1/channels/{created['id']}", json={"name": "renamed"})
    assert patched.json()["name"] == "renamed"
    assert api.delete(f"/api/v1/channels/{created['id']}").status_code == 204
    assert_envelope(api.get(f"/api/v1/channels/{created['id']}"), 404, "CHANNEL_NOT_FOUND")


def test_channel_validation(api):
    assert "url" in assert_envelope(api.post("/api/v1/channels", json={
        "name": "x", "kind": "webhook"}), 422, "VALIDATION_ERROR")["details"]
    assert "addresses" in assert_envelope(api.post("/api/v1/channels", json={
        "name": "x", "kind": "email"}), 422, "VALIDATION_ERROR")["details"]
    assert "url" in assert_envelope(api.post("/api/v1/channels", json={
        "name": "x", "kind": "webhook", "url": "ftp://x"}), 422, "VALIDATION_ERROR")["details"]


def test_application_lists_its_channels_and_refuses_unknown_ones(api, sink):
    channel = make_channel(api, name="hook", kind="webhook", url=sink.url)
    app = api.post("/api/v1/applications", json={"name": "x", "channels": [channel["id"]]})
    assert app.json()["channels"] == [channel["id"]]
    error = assert_envelope(api.post("/api/v1/applications",
                                     json={"name": "y", "channels": [999]}), 422,
                            "VALIDATION_ERROR")
    assert "channels" in error["details"]


def test_unknown_alert_answers_alert_not_found(api):
    assert_envelope(api.get("/api/v1/alerts/12345"), 404, "ALERT_NOT_FOUND")


def test_an_alert_in_flight_is_not_sent_again_when_its_lease_runs_out(
        api, anonymous, sink, runtime, clock):
    """A send outliving its lease (a stall, a clock jump) must not be claimed again by the
    process still sending it: the lowest alert would be resent forever, the others starve."""
    sink.default = {"status": 200, "hang": 0.5}
    channel = make_channel(api, name="slow", kind="webhook", url=sink.url)
    for n in range(4):
        app = watched_application(api, anonymous, [channel["id"]], name=f"job-{n}")
        anonymous.get(f"/ping/{app['uuid']}/fail")
    deliverer = runtime.deliverer
    assert deliverer.dispatch_due() == 2  # two per channel at once
    def every_lease_runs_out_while_the_sends_hang() -> bool:
        clock.advance(seconds=600)
        deliverer.dispatch_due()
        return len(set(sink.alert_ids())) == 4
    wait_until(every_lease_runs_out_while_the_sends_hang, interval_seconds=0.05)
    deliverer.drain(10)
    assert sorted(collections.Counter(sink.alert_ids()).values()) == [1, 1, 1, 1]
    assert {a["state"] for a in alerts(api)} == {"delivered"}


def test_unreachable_and_hanging_destinations_are_transient_with_their_reason(sink, clock):
    transports = Transports(Settings.load({"ALERT_TIMEOUT_SECONDS": 0.3,
                                           "ALLOW_PRIVATE_WEBHOOK_TARGETS": True}), clock)

    def attempt(url: str, alert_uuid: str, payload: dict) -> Attempt:
        return transports.attempt(Destination(id=1, kind="webhook", url=url), alert_uuid, payload)

    refused = attempt(f"http://127.0.0.1:{free_port()}/hook", "a1", {})
    assert (refused.outcome, refused.error) == ("transient_error",
                                                "connection failed: NewConnectionError")
    sink.default = {"status": 200, "hang": 1.0}
    hung = attempt(sink.url, "a2", {})
    assert (hung.outcome, hung.error) == ("transient_error", "timed out after 0.3 s")
    sink.default = {"status": 307, "headers": {"Location": "http://127.0.0.1:1/"}}
    redirected = attempt(sink.url, "a3", {})
    assert redirected.outcome == "permanent_error"
    assert "redirects are not followed" in redirected.error
    sink.default = 200
    delivered = attempt(sink.url, "a4", {"event": "x"})
    assert (delivered.outcome, delivered.http_status) == ("delivered", 200)
    assert sink.received[-1]["headers"]["User-Agent"] == "HeartbeatMonitor/1.0"
    assert sink.received[-1]["headers"]["Idempotency-Key"] == "a4"


def test_a_channel_deleted_while_its_alert_is_sent_does_not_hold_up_the_others(
        api, anonymous, sink, other_sink, runtime):
    sink.default = {"status": 200, "hang": 0.5}
    doomed = make_channel(api, name="doomed", kind="webhook", url=sink.url)
    kept = make_channel(api, name="kept", kind="webhook", url=other_sink.url)
    other_sink.default = {"status": 200, "hang": 0.5}  # both outcomes written together
    for n in range(3):
        app = watched_application(api, anonymous, [doomed["id"], kept["id"]], name=f"job-{n}")
        anonymous.get(f"/ping/{app['uuid']}/fail")
    deliverer = runtime.deliverer
    assert deliverer.dispatch_due() == 4  # two slots per channel
    assert api.delete(f"/api/v1/channels/{doomed['id']}").status_code == 204  # mid-send
    deliverer.drain(15)
    remaining = alerts(api)
    assert {(a["channel_id"], a["state"]) for a in remaining} == {(kept["id"], "delivered")}
    assert len(remaining) == 3
    assert sorted(collections.Counter(other_sink.alert_ids()).values()) == [1, 1, 1]
    assert all(a["attempt_count"] == 1 for a in remaining)


def test_alerts_waiting_for_a_slot_at_shutdown_go_out_at_the_next_start(
        make_app, sink, other_sink, clock):
    """Given back at shutdown, not left claimed until their lease runs out."""
    config = {"ALERT_CONCURRENCY_PER_KIND": 1, "ALERT_CONCURRENCY_PER_CHANNEL": 1}
    first = make_app(**config)
    with first.app_context():
        sending = create_channel({"name": "a", "kind": "webhook", "url": sink.url}, clock.now())
        waiting = create_channel({"name": "b", "kind": "webhook", "url": other_sink.url},
                                 clock.now())
        for n in range(2):
            application = create_application(
                {"name": f"job-{n}", "channels": [sending.id, waiting.id]}, clock.now())
            record_heartbeat(application.uuid, Signal(kind="fail", received_at=clock.now()))
    sink.default = {"status": 200, "hang": 0.5}
    deliverer = first.extensions["hbmon"].deliverer
    # One slot for webhooks: one channel's batch sends, the other's waits for the slot.
    assert deliverer.dispatch_due() == 2
    deliverer.shutdown()  # at once: the waiting batch never gets the slot
    close_app(first)
    assert other_sink.received == []
    second = make_app(**config)  # the clock has not moved: every lease still runs
    second.extensions["hbmon"].deliverer.drain(10)
    assert sorted(collections.Counter(sink.alert_ids()).values()) == [1, 1]
    assert sorted(collections.Counter(other_sink.alert_ids()).values()) == [1, 1]
