"""§8 Reminders and escalation: while an incident is open and unacknowledged."""
from __future__ import annotations

from tests.helpers import assert_envelope
from tests.incident_helpers import events, go_down, make_application, make_channel, queued


def tick_every(runtime, clock, seconds: int, times: int) -> None:
    for _ in range(times):
        clock.advance(seconds=seconds)
        runtime.monitor.tick()


def test_a_reminder_goes_every_interval_while_the_incident_is_open(
        api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel], reminder_interval_seconds=600)["uuid"]
    go_down(api, anonymous, runtime, clock, uuid)
    tick_every(runtime, clock, 100, 19)  # 1,900 s: reminders at 600, 1200 and 1800
    assert events(api) == [("application.down", channel)] + [
        ("application.still_down", channel)] * 3
    still_down = queued(api)[1][2]
    assert still_down["event"] == "application.still_down" and "ack_url" in still_down
    anonymous.get(f"/ping/{uuid}")
    tick_every(runtime, clock, 100, 12)
    assert events(api)[-1] == ("application.up", channel)
    assert len(events(api)) == 5


def test_reminders_are_off_by_default(api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel])["uuid"]
    assert api.get(f"/api/v1/applications/{uuid}").json()["reminder_interval_seconds"] == 0
    go_down(api, anonymous, runtime, clock, uuid)
    tick_every(runtime, clock, 3600, 24)
    assert events(api) == [("application.down", channel)]


def test_each_escalation_step_goes_once_to_its_channels_and_recovery_to_all_told(
        api, anonymous, runtime, clock, sink):
    ops, lead, boss = (make_channel(api, name, sink) for name in ("ops", "lead", "boss"))
    uuid = make_application(api, channels=[ops], escalation=[
        {"after_seconds": 300, "channels": [lead]},
        {"after_seconds": 900, "channels": [boss, lead]}])["uuid"]
    incident = go_down(api, anonymous, runtime, clock, uuid)
    assert incident["next_escalation_at"] is not None
    tick_every(runtime, clock, 60, 30)
    anonymous.get(f"/ping/{uuid}")
    assert events(api) == [
        ("application.down", ops), ("application.down", lead),
        ("application.down", lead), ("application.down", boss),
        ("application.up", ops), ("application.up", lead), ("application.up", boss)]
    steps = [payload.get("escalation_step") for _, _, payload in queued(api)[:4]]
    assert steps == [None, 1, 2, 2]
    assert all("ack_url" in payload for _, _, payload in queued(api)[:4])


def test_escalation_steps_that_fell_due_together_all_go(api, anonymous, runtime, clock, sink):
    ops, lead = make_channel(api, "ops", sink), make_channel(api, "lead", sink)
    uuid = make_application(api, channels=[ops], escalation=[
        {"after_seconds": 60, "channels": [lead]}, {"after_seconds": 120, "channels": [lead]}])
    go_down(api, anonymous, runtime, clock, uuid["uuid"])
    tick_every(runtime, clock, 3600, 2)
    assert [payload.get("escalation_step") for _, _, payload in queued(api)] == [None, 1, 2]


def test_escalation_naming_a_missing_channel_is_refused_naming_the_field(api, sink):
    channel = make_channel(api, "ops", sink)
    answer = api.post("/api/v1/applications", json={"name": "x", "escalation": [
        {"after_seconds": 60, "channels": [channel]},
        {"after_seconds": 120, "channels": [channel, 999]}]})
    error = assert_envelope(answer, 422, "VALIDATION_ERROR")
    assert "escalation.1.channels" in error["details"]


def test_escalation_steps_must_come_in_order(api, sink):
    channel = make_channel(api, "ops", sink)
    answer = api.post("/api/v1/applications", json={"name": "x", "escalation": [
        {"after_seconds": 600, "channels": [channel]},
        {"after_seconds": 60, "channels": [channel]}]})
    error = assert_envelope(answer, 422, "VALIDATION_ERROR")
    assert "escalation.1.after_seconds" in error["details"]
