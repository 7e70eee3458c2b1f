"""§6.1–6.2: the monitor turns silence into late and down, with incidents and alerts."""
from __future__ import annotations

import datetime as dt
import threading
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from database import db
from heartbeat_monitor import Monitor
from models import Application, ErrorLog
from status_rules import next_check_at, status_by_time

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def application(status="up", deadline=60, grace=30, start=None):
    return SimpleNamespace(status=status, grace_seconds=grace, max_duration_seconds=None,
                           next_deadline_at=at(deadline) if deadline is not None else None,
                           last_start_at=at(start) if start is not None else None)


@pytest.mark.parametrize("state, now, expected", [
    (application("up"), 59, ("up", None)),
    (application("up"), 60, ("late", None)),
    (application("up"), 89, ("late", None)),
    (application("up"), 90, ("down", "missed")),
    (application("late"), 75, ("late", None)),
    (application("late"), 90, ("down", "missed")),
    (application("new", deadline=None), 10**6, ("new", None)),
    (application("new", deadline=None, start=0), 29, ("new", None)),
    (application("new", deadline=None, start=0), 30, ("down", "missed")),
    (application("up", deadline=600, start=100), 129, ("up", None)),
    (application("up", deadline=600, start=100), 130, ("down", "missed")),
    (application("paused"), 10**6, ("paused", None)),
    (application("down"), 10**6, ("down", None)),
], ids=lambda value: str(value) if not isinstance(value, SimpleNamespace) else value.status)
def test_status_by_time(state, now, expected):
    assert status_by_time(state, at(now)) == expected


@pytest.mark.parametrize("state, expected", [
    (application("up"), at(60)),
    (application("late"), at(90)),
    (application("up", deadline=600, start=100), at(130)),
    (application("new", deadline=None), None),
    (application("down"), None),
    (application("paused"), None),
])
def test_next_check_is_the_next_moment_time_can_change_the_status(state, expected):
    assert next_check_at(state) == expected


def _status(api, uuid):
    return api.get(f"/api/v1/applications/{uuid}").json()["status"]


def test_silence_goes_late_then_down_and_opens_one_incident(api, anonymous, runtime, clock):
    app = api.post("/api/v1/applications", json={
        "name": "etl", "period_seconds": 60, "grace_seconds": 30}).json()
    anonymous.get(f"/ping/{app['uuid']}")
    observed = []
    for seconds in (59, 1, 29, 1, 600):
        clock.advance(seconds=seconds)
        runtime.monitor.tick()
        observed.append(_status(api, app["uuid"]))
    assert observed == ["up", "late", "late", "down", "down"]
    incidents = api.get(f"/api/v1/applications/{app['uuid']}/incidents").json()["items"]
    assert [(i["reason"], i["started_at"], i["resolved_at"]) for i in incidents] == [
        ("missed", "2030-01-01T00:01:30Z", None)]

    anonymous.get(f"/ping/{app['uuid']}")
    assert _status(api, app["uuid"]) == "up"
    incidents = api.get(f"/api/v1/applications/{app['uuid']}/incidents").json()["items"]
    assert incidents[0]["resolved_at"] is not None


def test_start_without_end_within_grace_is_missed(api, anonymous, runtime, clock):
    app = api.post("/api/v1/applications", json={
        "name": "long", "period_seconds": 3600, "grace_seconds": 120}).json()
    anonymous.get(f"/ping/{app['uuid']}")
    clock.advance(seconds=600)
    anonymous.get(f"/ping/{app['uuid']}/start")
    clock.advance(seconds=119)
    runtime.monitor.tick()
    assert _status(api, app["uuid"]) == "up"
    clock.advance(seconds=1)
    runtime.monitor.tick()
    assert _status(api, app["uuid"]) == "down"


def test_paused_application_ignores_time(api, anonymous, runtime, clock):
    app = api.post("/api/v1/applications", json={"name": "p", "period_seconds": 60}).json()
    anonymous.get(f"/ping/{app['uuid']}")
    api.post(f"/api/v1/applications/{app['uuid']}/pause")
    clock.advance(days=30)
    assert runtime.monitor.tick() == 0
    assert _status(api, app["uuid"]) == "paused"


def test_new_application_is_never_down_before_its_first_ping(api, runtime, clock):
    app = api.post("/api/v1/applications", json={"name": "n", "period_seconds": 60}).json()
    clock.advance(days=30)
    runtime.monitor.tick()
    assert _status(api, app["uuid"]) == "new"


def test_cron_application_goes_down_after_missed_fire_plus_grace(api, anonymous, runtime, clock):
    app = api.post("/api/v1/applications", json={
        "name": "nightly", "cron": "0 3 * * *", "timezone": "America/New_York",
        "grace_seconds": 600}).json()
    anonymous.get(f"/ping/{app['uuid']}")  # 2030-01-01 00:00 UTC = 19:00 New York
    deadline = api.get(f"/api/v1/applications/{app['uuid']}").json()["next_deadline_at"]
    assert deadline == "2030-01-01T08:00:00Z"  # 03:00 EST
    clock.set(dt.datetime(2030, 1, 1, 8, 9, 59, tzinfo=dt.timezone.utc))
    runtime.monitor.tick()
    assert _status(api, app["uuid"]) == "late"
    clock.advance(seconds=1)
    runtime.monitor.tick()
    assert _status(api, app["uuid"]) == "down"


def _next_check(app, uuid):

    with app.app_context():
        return db.session.execute(select(Application.next_check_at)
                                  .where(Application.uuid == uuid)).scalar_one()


def test_a_ping_keeps_a_check_in_the_second_half_of_its_wait_and_the_monitor_moves_it_on(
        app, api, anonymous, runtime, clock):
    uuid = api.post("/api/v1/applications", json={
        "name": "chatty", "period_seconds": 60, "grace_seconds": 30}).json()["uuid"]
    anonymous.get(f"/ping/{uuid}")  # deadline and check at T0+60
    clock.advance(seconds=10)
    anonymous.get(f"/ping/{uuid}")  # deadline T0+70: T0+60 is in the second half of the wait
    assert _next_check(app, uuid) == at(60)
    clock.advance(seconds=50)
    assert runtime.monitor.tick() == 0  # T0+60: nothing is due, the check moves on
    assert (_status(api, uuid), _next_check(app, uuid)) == ("up", at(70))
    clock.advance(seconds=10)
    assert runtime.monitor.tick() == 1  # the second ping's own deadline
    assert _status(api, uuid) == "late"


def test_a_ping_moves_a_check_in_the_first_half_of_its_wait(app, api, anonymous, clock):
    uuid = api.post("/api/v1/applications", json={
        "name": "on-time", "period_seconds": 60, "grace_seconds": 30}).json()["uuid"]
    anonymous.get(f"/ping/{uuid}")
    clock.advance(seconds=40)
    anonymous.get(f"/ping/{uuid}")  # T0+60 is in the first third of the wait to T0+100
    assert _next_check(app, uuid) == at(100)


def test_an_outage_gap_does_not_push_back_a_deadline_that_a_kept_check_stood_for(
        app, api, anonymous, runtime, clock):
    """The monitor was away over a kept check (T0+60) but not over the deadline (T0+70)."""
    uuid = api.post("/api/v1/applications", json={
        "name": "chatty", "period_seconds": 60, "grace_seconds": 30}).json()["uuid"]
    anonymous.get(f"/ping/{uuid}")
    clock.advance(seconds=10)
    anonymous.get(f"/ping/{uuid}")
    runtime.monitor.tick()  # alive at T0+10
    clock.advance(seconds=55)  # away for longer than OUTAGE_GAP_SECONDS (30)
    runtime.monitor.tick()
    assert (_status(api, uuid), _next_check(app, uuid)) == ("up", at(70))
    clock.advance(seconds=5)
    runtime.monitor.tick()
    assert _status(api, uuid) == "late"


def test_a_monitor_tick_that_fails_is_recorded_and_the_loop_survives(app, runtime, clock):



    calls = []

    def exploding_task(now):
        calls.append(now)
        if len(calls) == 1:
            raise RuntimeError("tick broke")

    runtime.monitor.after_judging.append(exploding_task)
    runtime.monitor.interval_seconds = 0.01
    stop = threading.Event()
    thread = threading.Thread(target=runtime.monitor.run, args=(stop,))
    thread.start()
    try:
        for _ in range(500):
            if len(calls) >= 2:
                break
            stop.wait(0.01)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert len(calls) >= 2
    with app.app_context():
        rows = db.session.execute(select(ErrorLog)).scalars().all()
    assert [row.error_type for row in rows] == ["RuntimeError"]


def test_a_tick_runs_at_most_one_housekeeping_task_and_each_again_a_minute_later(app, clock):
    ran = []
    monitor = Monitor(app, clock, 2.0, housekeeping=[lambda now: ran.append(("a", now)),
                                                     lambda now: ran.append(("b", now))])
    start = clock.now()
    for _ in range(3):
        monitor.tick()
    assert ran == [("a", start), ("b", start)]
    clock.advance(seconds=59)
    monitor.tick()
    assert len(ran) == 2
    clock.advance(seconds=1)
    monitor.tick()
    monitor.tick()
    assert ran[2:] == [("a", start + dt.timedelta(seconds=60)),
                       ("b", start + dt.timedelta(seconds=60))]


def _local(zone: str, day: dt.date, cron: str, fold: int = 0) -> dt.datetime:
    from zoneinfo import ZoneInfo
    minute, hour = (int(part) for part in cron.split()[:2])
    moment = dt.datetime.combine(day, dt.time(hour, minute, fold=fold), ZoneInfo(zone))
    return moment.astimezone(dt.timezone.utc)


@pytest.mark.parametrize("zone, day, cron", [
    ("Europe/Berlin", dt.date(2030, 10, 27), "30 2 * * *"),
    ("America/New_York", dt.date(2030, 11, 3), "30 1 * * *"),
    ("Australia/Sydney", dt.date(2030, 4, 7), "30 2 * * *"),
], ids=["Berlin", "New_York", "Sydney"])
def test_a_job_that_ran_before_the_clocks_went_back_is_not_alerted_in_the_repeated_hour(
        api, anonymous, runtime, clock, zone, day, cron):
    app = api.post("/api/v1/applications", json={
        "name": "nightly", "cron": cron, "timezone": zone, "grace_seconds": 600}).json()
    first_run = _local(zone, day, cron)
    clock.set(first_run + dt.timedelta(seconds=5))
    anonymous.get(f"/ping/{app['uuid']}")
    repeated = _local(zone, day, cron, fold=1)
    assert repeated - first_run == dt.timedelta(hours=1)
    clock.set(repeated + dt.timedelta(seconds=601))  # past the repeated 02:30 and its grace
    runtime.monitor.tick()
    assert _status(api, app["uuid"]) == "up"
    state = api.get(f"/api/v1/applications/{app['uuid']}").json()
    assert state["next_deadline_at"] == _local(zone, day + dt.timedelta(days=1), cron) \
        .isoformat().replace("+00:00", "Z")
    assert api.get(f"/api/v1/applications/{app['uuid']}/incidents").json()["items"] == []


@pytest.mark.parametrize("zone, day, jump", [
    ("Europe/Berlin", dt.date(2030, 3, 31), dt.datetime(2030, 3, 31, 1, tzinfo=dt.timezone.utc)),
    ("America/New_York", dt.date(2030, 3, 10),
     dt.datetime(2030, 3, 10, 7, tzinfo=dt.timezone.utc)),
    ("Australia/Sydney", dt.date(2030, 10, 6),
     dt.datetime(2030, 10, 5, 16, tzinfo=dt.timezone.utc)),
], ids=["Berlin", "New_York", "Sydney"])
def test_a_job_at_a_time_the_spring_change_skips_is_due_right_after_the_jump(
        api, anonymous, runtime, clock, zone, day, jump):
    ran, skipped = (api.post("/api/v1/applications", json={
        "name": name, "cron": "30 2 * * *", "timezone": zone, "grace_seconds": 600}).json()
        for name in ("ran", "did-not-run"))
    clock.set(_local(zone, day - dt.timedelta(days=1), "30 2 * * *") + dt.timedelta(seconds=5))
    for app in (ran, skipped):
        anonymous.get(f"/ping/{app['uuid']}")
        state = api.get(f"/api/v1/applications/{app['uuid']}").json()
        assert state["next_deadline_at"] == jump.isoformat().replace("+00:00", "Z")
    clock.set(jump + dt.timedelta(seconds=30))  # cron runs the job as the clocks jump
    anonymous.get(f"/ping/{ran['uuid']}")
    clock.set(jump + dt.timedelta(seconds=601))
    runtime.monitor.tick()
    assert _status(api, ran["uuid"]) == "up"
    assert _status(api, skipped["uuid"]) == "down"  # alerted that same night, after its grace
