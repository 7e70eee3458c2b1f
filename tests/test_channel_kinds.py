"""§6.8: PagerDuty (Events API v2) and Apprise channels, against local servers."""
from __future__ import annotations

import email
import email.policy
import json
from urllib.parse import parse_qs

import pytest
from sqlalchemy import update

from database import db
from models import Channel
from tests.conftest import Client, make_key
from tests.helpers import assert_envelope

ROUTING_KEY = "R0UT1NGKEY0123456789abcdefabcdef"
ACCEPTED = {"status": 202, "body": {"status": "success", "message": "Event processed",
                                    "dedup_key": "x"}}
INVALID = {"status": 400, "body": {"status": "invalid event", "message": "Event object is "
                                   "invalid", "errors": ["'routing_key' is invalid"]}}


@pytest.fixture
def operator(served_app):
    app, live = served_app()
    return app, Client(live.url, make_key(app)), Client(live.url)


def create(api, **fields) -> dict:
    response = api.post("/api/v1/channels", json=fields)
    assert response.status_code == 201, response.text
    return response.json()


def failing_application(api, anonymous, channel_ids: list[int]) -> dict:
    created = api.post("/api/v1/applications", json={
        "name": "payroll", "period_seconds": 60, "grace_seconds": 30, "channels": channel_ids})
    assert created.status_code == 201, created.text
    application = created.json()
    assert anonymous.post(f"/ping/{application['uuid']}/2", data=b"out of memory").status_code \
        == 200
    return application


def alert_states(api) -> list[tuple[str, int]]:
    return [(alert["state"], alert["attempt_count"])
            for alert in api.get("/api/v1/alerts").json()["items"]]


def test_pagerduty_triggers_acknowledges_and_resolves_one_incident_by_its_dedup_key(
        operator, sink):
    app, api, anonymous = operator
    sink.default = ACCEPTED
    channel = create(api, name="pd", kind="pagerduty", url=sink.url, routing_key=ROUTING_KEY)
    for shown in (channel, api.get(f"/api/v1/channels/{channel['id']}").json(),
                  api.get("/api/v1/channels").json()):
        assert ROUTING_KEY not in json.dumps(shown)
    assert channel["has_secret"] is True
    application = failing_application(api, anonymous, [channel["id"]])
    deliverer = app.extensions["hbmon"].deliverer
    deliverer.drain()
    [incident] = api.get(f"/api/v1/applications/{application['uuid']}/incidents").json()["items"]
    assert api.post(f"/api/v1/incidents/{incident['id']}/acknowledge").status_code == 200
    deliverer.drain()
    assert anonymous.get(f"/ping/{application['uuid']}").status_code == 200
    deliverer.drain()

    events = [request["json"] for request in sink.received]
    assert [event["event_action"] for event in events] == ["trigger", "acknowledge", "resolve"]
    assert {event["dedup_key"] for event in events} == {
        f"heartbeat-monitor/{application['uuid']}/incident/{incident['id']}"}
    assert {event["routing_key"] for event in events} == {ROUTING_KEY}
    trigger = events[0]["payload"]
    assert trigger["summary"] == "payroll is DOWN (failed, exit code 2)"
    assert trigger["severity"] == "critical" and trigger["source"] == "payroll"
    assert trigger["custom_details"]["last_message"] == "out of memory"
    assert trigger["custom_details"]["exit_code"] == 2
    assert events[0]["links"][0]["href"].endswith(f"/applications/{application['uuid']}")
    assert alert_states(api) == [("delivered", 1)] * 3


def test_pagerduty_400_fails_at_once_and_429_is_retried(operator, sink, clock):
    app, api, anonymous = operator
    channel = create(api, name="pd", kind="pagerduty", url=sink.url, routing_key=ROUTING_KEY)
    sink.then(INVALID)
    failing_application(api, anonymous, [channel["id"]])
    deliverer = app.extensions["hbmon"].deliverer
    deliverer.drain()
    assert alert_states(api) == [("failed", 1)]

    sink.then({"status": 429, "body": {"status": "throttle event", "message": "Requests for "
                                       "this service are arriving too quickly"}}, ACCEPTED)
    other = api.post("/api/v1/applications", json={"name": "ledger", "channels": [channel["id"]]})
    anonymous.get(f"/ping/{other.json()['uuid']}/fail")
    deliverer.drain()
    assert alert_states(api)[0] == ("pending", 1)
    clock.advance(seconds=60)  # past the backoff, capped at the breaker's recovery time
    deliverer.drain()
    assert alert_states(api)[0] == ("delivered", 2)
    assert len(sink.received) == 1


def test_pagerduty_needs_a_routing_key(operator):
    _, api, _ = operator
    error = assert_envelope(api.post("/api/v1/channels", json={"name": "pd", "kind": "pagerduty"}),
                            422, "VALIDATION_ERROR")
    assert "routing_key" in error["details"]


def test_apprise_json_and_form_urls_deliver_with_apprise_retries_off(operator, sink,
                                                                     other_sink):
    app, api, anonymous = operator
    host = sink.url.split("/")[2]
    # Apprise's own retries asked for in the URL: they stay off, our engine retries.
    as_json = create(api, name="json", kind="apprise", url=f"json://{host}/notify?retry=3")
    as_form = create(api, name="form", kind="apprise",
                     url=f"form://{other_sink.url.split('/')[2]}/notify")
    sink.then(503)
    failing_application(api, anonymous, [as_json["id"], as_form["id"]])
    deliverer = app.extensions["hbmon"].deliverer
    deliverer.drain()
    assert sink.answered[503] == 1  # one try: a "no" is a transient failure, left to us
    states = {alert["channel_id"]: (alert["state"], alert["last_error"])
              for alert in api.get("/api/v1/alerts").json()["items"]}
    assert states[as_json["id"]] == ("pending", "the JSON service refused or did not answer")
    assert states[as_form["id"]][0] == "delivered"
    form = parse_qs(other_sink.received[0]["body"].decode())
    assert form["title"] == ["payroll is DOWN (failed, exit code 2)"]
    assert "out of memory" in form["message"][0] and form["type"] == ["failure"]

    app.extensions["hbmon"].clock.advance(seconds=60)
    deliverer.drain()
    notification = sink.received[0]["json"]
    assert notification["title"] == "payroll is DOWN (failed, exit code 2)"
    assert "Exit code:      2" in notification["message"]
    assert sink.received[0]["path"] == "/notify"


def test_apprise_mailto_reaches_the_local_smtp_server(operator, smtp_sink):
    app, api, anonymous = operator
    channel = create(api, name="mail", kind="apprise",
                     url=f"mailto://127.0.0.1:{smtp_sink.port}?mode=insecure"
                         "&to=oncall@example.test&from=monitor@example.test")
    failing_application(api, anonymous, [channel["id"]])
    app.extensions["hbmon"].deliverer.drain()
    [envelope] = smtp_sink.messages
    assert envelope.rcpt_tos == ["oncall@example.test"]
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert message["Subject"] == "payroll is DOWN (failed, exit code 2)"


def test_apprise_url_secrets_are_never_returned(operator):
    _, api, _ = operator
    token = "123456789:AAbbCCddEEffGGhhIIjjKKllMMnnOOppQQ"
    channel = create(api, name="tg", kind="apprise", url=f"tgram://{token}/987654")
    shown = json.dumps([channel, api.get("/api/v1/channels").json()])
    assert token not in shown and "tgram://" in channel["url"]


def test_apprise_and_pagerduty_targets_pass_the_ssrf_guard_on_save_and_delivery(
        served_app, sink, smtp_sink):
    app, live = served_app(ALLOW_PRIVATE_WEBHOOK_TARGETS=False)
    api, anonymous = Client(live.url, make_key(app)), Client(live.url)
    host = sink.url.split("/")[2]
    for fields in ({"kind": "apprise", "url": f"json://{host}/notify"},
                   {"kind": "apprise", "url": "ntfy://10.0.0.7/alerts"},
                   {"kind": "apprise", "url": f"mailto://127.0.0.1:{smtp_sink.port}"
                                              "?to=a@example.test&from=m@example.test"},
                   {"kind": "pagerduty", "url": sink.url, "routing_key": ROUTING_KEY}):
        error = assert_envelope(api.post("/api/v1/channels", json={"name": "x", **fields}),
                                422, "VALIDATION_ERROR")
        assert "Refused" in error["details"]["url"][0], fields
    assert_envelope(api.post("/api/v1/channels", json={
        "name": "x", "kind": "apprise", "url": "nonsense://what"}), 422, "VALIDATION_ERROR")

    # Saved while pointing elsewhere, then moved inward behind the API's back: refused when sent.
    public = create(api, name="ok", kind="apprise", url="json://93.184.215.14/notify")
    with app.app_context():
        db.session.execute(update(Channel).where(Channel.id == public["id"]).values(
            url=f"json://{host}/notify"))
        db.session.commit()
    failing_application(api, anonymous, [public["id"]])
    app.extensions["hbmon"].deliverer.drain()
    [alert] = api.get("/api/v1/alerts").json()["items"]
    assert alert["state"] == "failed" and "refused" in alert["last_error"]
    assert sink.received == []
