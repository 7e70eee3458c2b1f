"""§8 Maintenance windows and snooze: everything is recorded, alerts are held."""
from __future__ import annotations

import datetime as dt

import pytest

from maintenance import recurring_occurrence
from tests.helpers import assert_envelope
from tests.incident_helpers import (
    events,
    go_down,
    make_application,
    make_channel,
    open_incident,
    queued,
)
from utils.clock import utc_iso

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


def window(api, clock, **fields) -> dict:
    body = {"name": "deploy", "starts_at": utc_iso(clock.now()),
            "ends_at": utc_iso(clock.now() + dt.timedelta(hours=1)), **fields}
    response = api.post("/api/v1/maintenance-windows", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_inside_a_window_the_incident_is_recorded_and_no_alert_queued(
        api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel])["uuid"]
    window(api, clock, applications=[uuid])
    incident = go_down(api, anonymous, runtime, clock, uuid)
    assert (incident["in_maintenance"], incident["alerted_at"]) == (True, None)
    assert api.get(f"/api/v1/applications/{uuid}").json()["status"] == "down"
    assert events(api) == []


def test_when_the_window_ends_a_still_open_incident_is_alerted_then(
        api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel])["uuid"]
    window(api, clock, applications=[uuid])
    go_down(api, anonymous, runtime, clock, uuid)
    clock.set(T0 + dt.timedelta(minutes=59))
    runtime.monitor.tick()
    assert events(api) == []
    clock.set(T0 + dt.timedelta(minutes=60, seconds=2))
    runtime.monitor.tick()
    assert events(api) == [("application.down", channel)]
    assert open_incident(api, uuid)["alerted_at"] == "2030-01-01T01:00:02Z"


def test_an_incident_resolved_inside_the_window_sends_nothing(
        api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel], tags=["db"])["uuid"]
    window(api, clock, tags=["db"])
    go_down(api, anonymous, runtime, clock, uuid)
    anonymous.get(f"/ping/{uuid}")
    clock.advance(hours=2)
    runtime.monitor.tick()
    assert events(api) == []


def test_a_window_without_scope_covers_every_application_and_a_scoped_one_only_its_own(
        api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    tagged = make_application(api, name="tagged", channels=[channel], tags=["db"])["uuid"]
    other = make_application(api, name="other", channels=[channel])["uuid"]
    window(api, clock, tags=["db"])
    for uuid in (tagged, other):
        anonymous.get(f"/ping/{uuid}")
    clock.advance(seconds=91)
    runtime.monitor.tick()
    assert [payload["application"]["uuid"] for _, _, payload in queued(api)] == [other]
    everything = window(api, clock, name="all")
    assert everything["applications"] == [] and everything["tags"] == []
    listed = api.get(f"/api/v1/applications/{other}").json()
    assert listed["in_maintenance"] is True


def test_a_recurring_window_holds_alerts_at_its_local_time(api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel])["uuid"]
    # 01:00-02:00 in Berlin is 00:00-01:00 UTC in January.
    created = window(api, clock, starts_at=None, ends_at=None, cron="0 1 * * *",
                     timezone="Europe/Berlin", duration_seconds=3600)
    assert (created["kind"], created["active"]) == ("recurring", True)
    assert created["occurrence_ends_at"] == "2030-01-01T01:00:00Z"
    go_down(api, anonymous, runtime, clock, uuid)
    assert events(api) == []
    clock.set(T0 + dt.timedelta(hours=1, seconds=1))
    runtime.monitor.tick()
    assert events(api) == [("application.down", channel)]
    active = api.get("/api/v1/maintenance-windows", params={"active": "true"}).json()["items"]
    assert active == []


def test_the_occurrence_of_a_window_crossing_a_dst_change_lasts_its_duration():
    # Europe/Berlin moves from 02:00 to 03:00 on 2030-03-31 (01:00 UTC).
    start, end = recurring_occurrence("30 0 * * *", "Europe/Berlin", 4 * 3600,
                                      dt.datetime(2030, 3, 31, 2, tzinfo=dt.timezone.utc))
    assert (start, end) == (dt.datetime(2030, 3, 30, 23, 30, tzinfo=dt.timezone.utc),
                            dt.datetime(2030, 3, 31, 3, 30, tzinfo=dt.timezone.utc))
    start, _ = recurring_occurrence("30 0 * * *", "Europe/Berlin", 4 * 3600,
                                    dt.datetime(2030, 4, 1, 0, tzinfo=dt.timezone.utc))
    assert start == dt.datetime(2030, 3, 31, 22, 30, tzinfo=dt.timezone.utc)  # CEST now


def test_ending_a_window_releases_what_it_held(api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel])["uuid"]
    created = window(api, clock, applications=[uuid])
    go_down(api, anonymous, runtime, clock, uuid)
    ended = api.post(f"/api/v1/maintenance-windows/{created['id']}/end")
    assert ended.status_code == 200 and ended.json()["active"] is False
    clock.advance(seconds=2)
    runtime.monitor.tick()
    assert events(api) == [("application.down", channel)]


def test_reminders_inside_a_window_are_skipped_and_resume_after(
        api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel], reminder_interval_seconds=600)["uuid"]
    go_down(api, anonymous, runtime, clock, uuid)  # alerted at T0+92
    window(api, clock, starts_at=utc_iso(T0 + dt.timedelta(seconds=550)),
           ends_at=utc_iso(T0 + dt.timedelta(seconds=1000)))
    for seconds in (700, 1300):  # the reminder of 692 falls in the window, 1292 does not
        clock.set(T0 + dt.timedelta(seconds=seconds))
        runtime.monitor.tick()
    assert events(api) == [("application.down", channel), ("application.still_down", channel)]


def test_snooze_holds_an_applications_alerts_until_then(api, anonymous, runtime, clock, sink):
    channel = make_channel(api, "ops", sink)
    uuid = make_application(api, channels=[channel])["uuid"]
    until = utc_iso(T0 + dt.timedelta(hours=2))
    snoozed = api.post(f"/api/v1/applications/{uuid}/snooze", json={"until": until})
    assert snoozed.status_code == 200, snoozed.text
    assert (snoozed.json()["snoozed_until"], snoozed.json()["in_maintenance"]) == (until, True)
    go_down(api, anonymous, runtime, clock, uuid)
    assert events(api) == []
    ended = api.delete(f"/api/v1/applications/{uuid}/snooze")
    assert ended.json()["snoozed_until"] is None
    clock.advance(seconds=2)
    runtime.monitor.tick()
    assert events(api) == [("application.down", channel)]


@pytest.mark.parametrize("body, field", [
    ({"name": "w", "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"},
     "ends_at"),
    ({"name": "w", "cron": "61 * * * *", "duration_seconds": 600}, "cron"),
    ({"name": "w", "cron": "0 3 * * *", "timezone": "Mars/Olympus", "duration_seconds": 600},
     "timezone"),
    ({"name": "w", "cron": "0 3 * * *"}, "duration_seconds"),
    ({"name": "w", "starts_at": "2030-01-02T00:00:00Z"}, "ends_at"),
    ({"name": "w", "applications": ["9b0c0fa4-5ae6-4cf2-8d0e-9c1b5e7bd111"],
      "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-03T00:00:00Z"}, "applications"),
])
def test_a_bad_window_is_refused_naming_the_field(api, body, field):
    error = assert_envelope(api.post("/api/v1/maintenance-windows", json=body), 422,
                            "VALIDATION_ERROR")
    assert field in error["details"], error


def test_a_snooze_in_the_past_is_refused(api, application):
    answer = api.post(f"/api/v1/applications/{application['uuid']}/snooze",
                      json={"until": "2029-12-31T23:00:00Z"})
    assert "until" in assert_envelope(answer, 422, "VALIDATION_ERROR")["details"]


def test_windows_can_be_listed_changed_and_deleted(api, clock):
    created = window(api, clock)
    changed = api.patch(f"/api/v1/maintenance-windows/{created['id']}",
                        json={"ends_at": utc_iso(T0 + dt.timedelta(hours=3))})
    assert changed.json()["ends_at"] == "2030-01-01T03:00:00Z"
    bad = api.patch(f"/api/v1/maintenance-windows/{created['id']}",
                    json={"ends_at": "2029-01-01T00:00:00Z"})
    assert "ends_at" in assert_envelope(bad, 422, "VALIDATION_ERROR")["details"]
    assert [item["id"] for item in api.get("/api/v1/maintenance-windows").json()["items"]] == [
        created["id"]]
    assert api.delete(f"/api/v1/maintenance-windows/{created['id']}").status_code == 204
    assert_envelope(api.get(f"/api/v1/maintenance-windows/{created['id']}"), 404, "NOT_FOUND")
