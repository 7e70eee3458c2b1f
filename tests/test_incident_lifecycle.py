"""§8 run duration, pause with an open incident, and the default outage gap."""
from __future__ import annotations

import pytest

from config import Settings
from tests.conftest import Client, make_key
from tests.helpers import assert_envelope
from tests.incident_helpers import events, go_down, make_application, make_channel, open_incident


def status(api, uuid: str) -> str:
    return api.get(f"/api/v1/applications/{uuid}").json()["status"]


def incidents(api, uuid: str) -> list[dict]:
    return api.get(f"/api/v1/applications/{uuid}/incidents").json()["items"]


def test_a_run_shorter_than_the_minimum_is_a_failure(api, anonymous, clock):
    uuid = make_application(api, min_duration_seconds=60)["uuid"]
    anonymous.get(f"/ping/{uuid}/start")
    clock.advance(seconds=59)
    anonymous.get(f"/ping/{uuid}")
    assert status(api, uuid) == "down"
    assert incidents(api, uuid)[0]["reason"] == "too_short"
    anonymous.get(f"/ping/{uuid}/start")
    clock.advance(seconds=60)
    anonymous.get(f"/ping/{uuid}/0")
    assert status(api, uuid) == "up"


def test_a_run_is_paired_by_its_rid(api, anonymous, clock):
    uuid = make_application(api, min_duration_seconds=30)["uuid"]
    first, second = "0f6b7c1e-0000-4000-8000-000000000001", "0f6b7c1e-0000-4000-8000-000000000002"
    anonymous.get(f"/ping/{uuid}/start?rid={first}")
    clock.advance(seconds=20)
    anonymous.get(f"/ping/{uuid}/start?rid={second}")
    clock.advance(seconds=20)
    anonymous.get(f"/ping/{uuid}?rid={second}")  # 20 s: too short
    assert incidents(api, uuid)[0]["reason"] == "too_short"


def test_a_run_unfinished_after_the_maximum_is_down_at_once(api, anonymous, runtime, clock,
                                                             sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel], period_seconds=3600, grace_seconds=3600,
                            max_duration_seconds=120)["uuid"]
    anonymous.get(f"/ping/{uuid}")
    anonymous.get(f"/ping/{uuid}/start")
    clock.advance(seconds=119)
    runtime.monitor.tick()
    assert status(api, uuid) == "up"
    clock.advance(seconds=1)
    runtime.monitor.tick()
    assert status(api, uuid) == "down"
    assert incidents(api, uuid)[0]["reason"] == "too_long"
    assert events(api) == [("application.down", channel)]


def test_a_minimum_above_the_maximum_is_refused(api, application):
    answer = api.post("/api/v1/applications", json={
        "name": "x", "min_duration_seconds": 600, "max_duration_seconds": 60})
    assert "min_duration_seconds" in assert_envelope(answer, 422, "VALIDATION_ERROR")["details"]
    api.patch(f"/api/v1/applications/{application['uuid']}", json={"max_duration_seconds": 60})
    answer = api.patch(f"/api/v1/applications/{application['uuid']}",
                       json={"min_duration_seconds": 61})
    assert "min_duration_seconds" in assert_envelope(answer, 422, "VALIDATION_ERROR")["details"]


def test_pausing_resolves_the_open_incident_and_tells_its_channels(
        api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel])["uuid"]
    incident = go_down(api, anonymous, runtime, clock, uuid)
    api.post(f"/api/v1/applications/{uuid}/pause")
    resolved = api.get(f"/api/v1/incidents/{incident['id']}").json()
    assert (resolved["state"], resolved["resolution"]) == ("resolved", "paused")
    assert events(api) == [("application.down", channel), ("application.up", channel)]
    api.post(f"/api/v1/applications/{uuid}/resume")
    anonymous.get(f"/ping/{uuid}")
    assert status(api, uuid) == "up" and open_incident(api, uuid) is None
    assert len(events(api)) == 2


def test_down_pause_ping_fail_leaves_one_open_incident(api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel])["uuid"]
    go_down(api, anonymous, runtime, clock, uuid)
    api.post(f"/api/v1/applications/{uuid}/pause")
    anonymous.get(f"/ping/{uuid}")
    anonymous.get(f"/ping/{uuid}/fail")
    open_ones = [item for item in incidents(api, uuid) if item["resolved_at"] is None]
    assert len(open_ones) == 1 and open_ones[0]["reason"] == "failed"
    assert [event for event, _ in events(api)] == ["application.down", "application.up",
                                                   "application.down"]


@pytest.mark.parametrize("environment, gap_seconds", [
    ({}, 6.0), ({"MONITOR_INTERVAL_SECONDS": "0.5"}, 1.5), ({"OUTAGE_GAP_SECONDS": "45"}, 45.0)])
def test_the_outage_gap_is_three_monitor_intervals_unless_set(environment, gap_seconds):
    assert Settings.load(environ=environment).outage_gap_seconds == gap_seconds


def test_a_short_stop_of_the_service_pages_no_one(make_app, clock, sink, serve):
    """Period 4 s, grace 2 s, the service away 14 s: not down until its full grace after."""
    app = make_app(OUTAGE_GAP_SECONDS=0)
    runtime = app.extensions["hbmon"]
    live = serve(app)
    api, anonymous = Client(live.url, make_key(app)), Client(live.url)
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel], period_seconds=4, grace_seconds=2)["uuid"]
    anonymous.get(f"/ping/{uuid}")
    for _ in range(3):
        clock.advance(seconds=2)
        runtime.monitor.tick()
        anonymous.get(f"/ping/{uuid}")
    clock.advance(seconds=14)  # stopped: no ticks, no pings
    clock.advance(seconds=0.4)
    runtime.monitor.tick()
    assert status(api, uuid) == "up" and events(api) == []
    for _ in range(2):
        clock.advance(seconds=3)
        runtime.monitor.tick()
    assert status(api, uuid) == "down"
