"""§8 Acknowledge: by the API and by the one-click link in every down alert."""
from __future__ import annotations

from urllib.parse import urlsplit

from tests.conftest import Client, make_key
from tests.helpers import assert_envelope
from tests.incident_helpers import events, go_down, make_application, make_channel, queued
from transports import Slack


def link_path(payload: dict) -> str:
    return urlsplit(payload["ack_url"]).path


def test_every_down_alert_carries_a_link_for_its_incident(api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel])["uuid"]
    incident = go_down(api, anonymous, runtime, clock, uuid)
    ((event, _, payload),) = queued(api)
    assert event == "application.down"
    assert payload["ack_url"].startswith("http://127.0.0.1:5000/acknowledge/")
    assert payload["incident"]["id"] == incident["id"]


def test_the_link_page_shows_the_incident_and_acknowledges_nothing(
        api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, name="nightly-backup", channels=[channel])["uuid"]
    incident = go_down(api, anonymous, runtime, clock, uuid)
    page = anonymous.get(link_path(queued(api)[0][2]))
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "nightly-backup" in page.text and '<form method="post"' in page.text
    assert "<script" not in page.text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert api.get(f"/api/v1/incidents/{incident['id']}").json()["state"] == "open"


def test_posting_the_link_acknowledges_without_an_api_key(api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel], reminder_interval_seconds=60)["uuid"]
    incident = go_down(api, anonymous, runtime, clock, uuid)
    answer = anonymous.post(link_path(queued(api)[0][2]), data={"note": "restarting it"})
    assert answer.status_code == 200 and "Acknowledged" in answer.text
    shown = api.get(f"/api/v1/incidents/{incident['id']}").json()
    assert (shown["state"], shown["acknowledged_by"], shown["acknowledgement_note"]) == (
        "acknowledged", "link:ops", "restarting it")
    clock.advance(seconds=600)
    runtime.monitor.tick()
    assert events(api) == [("application.down", channel)]  # no reminders after it


def test_a_changed_link_answers_not_found(api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel])["uuid"]
    go_down(api, anonymous, runtime, clock, uuid)
    path = link_path(queued(api)[0][2])
    assert_envelope(anonymous.post(path[:-2] + "xx"), 404, "NOT_FOUND")
    assert_envelope(anonymous.get("/acknowledge/WzEsMiwzXQ.bogus"), 404, "NOT_FOUND")


def test_a_link_is_void_once_its_incident_resolves(api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel])["uuid"]
    incident = go_down(api, anonymous, runtime, clock, uuid)
    path = link_path(queued(api)[0][2])
    anonymous.get(f"/ping/{uuid}")
    answer = anonymous.post(path)
    assert answer.status_code == 200 and "nothing to acknowledge" in answer.text
    assert api.get(f"/api/v1/incidents/{incident['id']}").json()["acknowledged_at"] is None


def test_a_link_acknowledges_its_own_incident_only(api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel])["uuid"]
    go_down(api, anonymous, runtime, clock, uuid)
    first_link = link_path(queued(api)[0][2])
    anonymous.get(f"/ping/{uuid}")
    second = go_down(api, anonymous, runtime, clock, uuid)
    anonymous.post(first_link)
    assert api.get(f"/api/v1/incidents/{second['id']}").json()["acknowledged_at"] is None


def test_api_acknowledge_records_who_and_stops_escalation(api, app, anonymous, runtime, clock,
                                                          sink):
    ops, boss = make_channel(api, "ops", sink), make_channel(api, "boss", sink)
    uuid = make_application(api, channels=[ops], escalation=[
        {"after_seconds": 300, "channels": [boss]}])["uuid"]
    incident = go_down(api, anonymous, runtime, clock, uuid)
    answer = api.post(f"/api/v1/incidents/{incident['id']}/acknowledge", json={"note": "mine"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["acknowledged_by"] == "api-key:operator"
    clock.advance(seconds=900)
    runtime.monitor.tick()
    assert events(api) == [("application.down", ops)]
    again = api.post(f"/api/v1/incidents/{incident['id']}/acknowledge")
    assert again.json()["acknowledged_at"] == answer.json()["acknowledged_at"]


def test_acknowledging_needs_a_read_write_key_and_an_open_incident(api, app, server, anonymous,
                                                                   runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel])["uuid"]
    incident = go_down(api, anonymous, runtime, clock, uuid)
    reader = Client(server.url, make_key(app, "reader", read_only=True))
    path = f"/api/v1/incidents/{incident['id']}/acknowledge"
    assert_envelope(reader.post(path), 403, "FORBIDDEN")
    assert_envelope(anonymous.post(path), 401, "UNAUTHORIZED")
    assert_envelope(api.post("/api/v1/incidents/999/acknowledge"), 404, "NOT_FOUND")
    anonymous.get(f"/ping/{uuid}")
    assert_envelope(api.post(path), 409, "CONFLICT")


def test_incidents_are_listed_across_applications_by_state(api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuids = [make_application(api, name=f"job-{n}", channels=[channel])["uuid"]
             for n in range(3)]
    for uuid in uuids:
        anonymous.get(f"/ping/{uuid}")
    clock.advance(seconds=91)
    runtime.monitor.tick()
    listed = api.get("/api/v1/incidents", params={"state": "open"}).json()["items"]
    assert sorted(item["application"]["uuid"] for item in listed) == sorted(uuids)
    api.post(f"/api/v1/incidents/{listed[0]['id']}/acknowledge")
    anonymous.get(f"/ping/{listed[1]['application']['uuid']}")
    by_state = {state: [item["id"] for item in api.get(
        "/api/v1/incidents", params={"state": state}).json()["items"]]
        for state in ("open", "acknowledged", "resolved")}
    assert by_state == {"open": [listed[2]["id"]], "acknowledged": [listed[0]["id"]],
                        "resolved": [listed[1]["id"]]}
    assert_envelope(api.get("/api/v1/incidents", params={"state": "sleeping"}), 422,
                    "VALIDATION_ERROR")


def test_acknowledging_tells_the_told_channels_that_take_acknowledgements(
        api, anonymous, runtime, clock, sink, monkeypatch):
    monkeypatch.setattr(Slack, "receives_acknowledgements", True, raising=False)
    hook = make_channel(api, "hook", sink)
    pager = api.post("/api/v1/channels", json={"name": "pager", "kind": "slack",
                                               "url": sink.url}).json()["id"]
    unused = api.post("/api/v1/channels", json={"name": "unused", "kind": "slack",
                                                "url": sink.url}).json()["id"]
    uuid = make_application(api, channels=[hook, pager])["uuid"]
    incident = go_down(api, anonymous, runtime, clock, uuid)
    api.patch(f"/api/v1/applications/{uuid}", json={"channels": [hook, pager, unused]})
    api.post(f"/api/v1/incidents/{incident['id']}/acknowledge")
    assert events(api)[2:] == [("application.acknowledged", pager)]
    payload = queued(api)[-1][2]
    assert payload["incident"]["acknowledged_by"] == "api-key:operator"
