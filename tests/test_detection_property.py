"""Random schedules, heartbeats, clock steps and incident response through the real service,
against a reference model written here without the service's code.

Each example: up to four applications (random periods, graces, failure thresholds, channels,
reminder intervals, escalation steps, a dependency forest, tags), up to two maintenance windows
(one-off, or recurring daily in a time zone, starting near a DST change so that they cross it),
then random steps: pings (ok, fail, start), waits (the monitor ticks every TICK seconds, as it
would), acknowledgements, snoozes and their ends, and outages of the service (time passes
without ticks or pings). Every alert queued must be one the model expects, at the same moment:
no missed, false or duplicated alert.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

import models
from acknowledgements import acknowledge
from app import create_app
from applications import create_application
from channels import create_channel
from database import db
from ingest.orm_store import record_heartbeat
from ingest.signals import Signal
from maintenance import create_window, end_snooze, snooze
from models import Alert, Application, Incident
from tests.conftest import migrate
from utils.clock import ManualClock, utc_iso

TICK = 60  # seconds between monitor ticks
GAP = 180  # OUTAGE_GAP_SECONDS: a longer silence of the service is an outage gap
UTC = dt.timezone.utc
# Moments near DST changes: Europe/Berlin and America/New_York, spring and autumn of 2030.
DST_CHANGES = [("Europe/Berlin", dt.datetime(2030, 3, 31, 1, tzinfo=UTC)),
               ("Europe/Berlin", dt.datetime(2030, 10, 27, 1, tzinfo=UTC)),
               ("America/New_York", dt.datetime(2030, 3, 10, 7, tzinfo=UTC)),
               ("America/New_York", dt.datetime(2030, 11, 3, 6, tzinfo=UTC))]


# --- The reference model ----------------------------------------------------------------------

@dataclasses.dataclass
class Window:
    """A one-off [start, end), or daily at hour:minute local time for duration seconds."""

    start: float | None = None
    end: float | None = None
    hour: int | None = None
    minute: int = 0
    timezone: str = "UTC"
    duration: int = 0
    apps: frozenset = frozenset()
    tags: frozenset = frozenset()

    def active(self, t0: dt.datetime, t: float) -> bool:
        if self.hour is None:
            return self.start <= t < self.end
        moment = t0 + dt.timedelta(seconds=t)
        zone = zoneinfo.ZoneInfo(self.timezone)
        today = moment.astimezone(zone).date()
        for day in (today - dt.timedelta(days=1), today):
            fire = dt.datetime(day.year, day.month, day.day, self.hour, self.minute,
                               tzinfo=zone).astimezone(UTC)
            if fire <= moment < fire + dt.timedelta(seconds=self.duration):
                return True
        return False

    def covers(self, index: int, tags: frozenset) -> bool:
        return (not self.apps and not self.tags) or index in self.apps \
            or bool(self.tags & tags)


@dataclasses.dataclass
class AppModel:
    period: int
    grace: int
    threshold: int
    channels: list
    reminder: int
    escalation: list  # [(after_seconds, [channel ids])]
    parent: int | None
    tags: frozenset
    status: str = "new"
    deadline: float | None = None
    started: float | None = None
    fails: int = 0
    incident: dict | None = None
    snoozes: list = dataclasses.field(default_factory=list)  # [start, end]


class Model:
    """SPEC §6.1, §6.3 and §8 in plain terms."""

    def __init__(self, t0: dt.datetime, apps: list[AppModel], windows: list[Window]):
        self.t0, self.apps, self.windows = t0, apps, windows
        self.alerts: list[tuple] = []
        self.last_alive: float | None = None

    def covered(self, index: int, t: float) -> bool:
        app = self.apps[index]
        return any(window.covers(index, app.tags) and window.active(self.t0, t)
                   for window in self.windows) \
            or any(start <= t < end for start, end in app.snoozes)

    def open_ancestor(self, index: int) -> int | None:
        parent = self.apps[index].parent
        while parent is not None:
            if self.apps[parent].incident is not None:
                return parent
            parent = self.apps[parent].parent
        return None

    def emit(self, t: float, event: str, index: int, channel: int, step: int | None = None):
        self.alerts.append((t, event, index, channel, step))

    def announce(self, index: int, t: float) -> None:
        app = self.apps[index]
        incident = app.incident
        incident.update(alerted=t, next_reminder=t + app.reminder if app.reminder else None)
        for channel in app.channels:
            self.emit(t, "application.down", index, channel)
            incident["told"].add(channel)

    def open(self, indexes: list[int], t: float) -> None:
        for index in indexes:
            self.apps[index].incident = {"alerted": None, "acked": False, "step": 0,
                                         "told": set(), "next_reminder": None}
        for index in indexes:
            if not self.covered(index, t) and self.open_ancestor(index) is None:
                self.announce(index, t)

    def resolve(self, index: int, t: float) -> None:
        incident = self.apps[index].incident
        self.apps[index].incident = None
        if incident["alerted"] is not None:
            for channel in sorted(incident["told"]):
                self.emit(t, "application.up", index, channel)

    def signal(self, index: int, kind: str, t: float) -> None:
        app = self.apps[index]
        if kind == "start":
            app.started = t
            return
        app.deadline, app.started = t + app.period, None
        if kind == "ok":
            if app.status == "down":
                self.resolve(index, t)
            app.status, app.fails = "up", 0
            return
        app.fails += 1
        if app.fails >= app.threshold:
            if app.status != "down":
                app.status = "down"
                self.open([index], t)
        elif app.status != "down":
            app.status = "up"

    def next_check(self, app: AppModel) -> float | None:
        if app.status in ("down", "paused"):
            return None
        checks = []
        if app.status == "up":
            checks.append(app.deadline)
        elif app.status == "late":
            checks.append(app.deadline + app.grace)
        if app.started is not None:
            checks.append(app.started + app.grace)
        return min(checks) if checks else None

    def tick(self, t: float) -> None:
        if self.last_alive is not None and t - self.last_alive > GAP:
            gap = t - self.last_alive
            for app in self.apps:
                check = self.next_check(app)
                if check is not None and self.last_alive <= check <= t:
                    app.deadline = app.deadline + gap if app.deadline is not None else None
                    app.started = app.started + gap if app.started is not None else None
        opening = []
        for index, app in enumerate(self.apps):
            if app.status not in ("new", "up", "late"):
                continue
            if app.started is not None and t >= app.started + app.grace:
                opening.append(index)
            elif app.status != "new" and t >= app.deadline + app.grace:
                opening.append(index)
            elif app.status != "new" and t >= app.deadline:
                app.status = "late"
        for index in opening:
            self.apps[index].status, self.apps[index].started = "down", None
        self.open(opening, t)
        for index, app in enumerate(self.apps):
            incident = app.incident
            if incident is None or incident["acked"]:
                continue
            covered = self.covered(index, t)
            if incident["alerted"] is None:
                if not covered and self.open_ancestor(index) is None:
                    self.announce(index, t)
                continue
            if incident["next_reminder"] is not None and t >= incident["next_reminder"]:
                if not covered:
                    for channel in app.channels:
                        self.emit(t, "application.still_down", index, channel)
                passed = (t - incident["alerted"]) // app.reminder
                incident["next_reminder"] = incident["alerted"] + app.reminder * (passed + 1)
            while not covered and incident["step"] < len(app.escalation) \
                    and t >= incident["alerted"] + app.escalation[incident["step"]][0]:
                incident["step"] += 1
                for channel in sorted(set(app.escalation[incident["step"] - 1][1])):
                    self.emit(t, "application.down", index, channel, incident["step"])
                    incident["told"].add(channel)
        self.last_alive = t

    def ack(self, index: int) -> None:
        if self.apps[index].incident is not None:
            self.apps[index].incident["acked"] = True


# --- Strategies -------------------------------------------------------------------------------

CHANNELS = 2


@st.composite
def applications(draw):
    count = draw(st.integers(1, 4))
    apps = []
    for index in range(count):
        channels = draw(st.lists(st.integers(0, CHANNELS - 1), max_size=2, unique=True))
        afters = sorted(draw(st.sets(st.integers(60, 1800), max_size=2)))
        escalation = [(after, draw(st.lists(st.integers(0, CHANNELS - 1), min_size=1,
                                            max_size=2, unique=True))) for after in afters]
        apps.append(dict(
            period=draw(st.integers(30, 900)), grace=draw(st.integers(0, 300)),
            threshold=draw(st.integers(1, 2)), channels=channels,
            reminder=draw(st.sampled_from([0, 0, 300, 700])), escalation=escalation,
            parent=draw(st.none() | st.integers(0, index - 1)) if index else None,
            tags=frozenset(draw(st.sets(st.sampled_from(["db", "web"]), max_size=1)))))
    return apps


@st.composite
def windows(draw, app_count: int, timezone: str):
    result = []
    for _ in range(draw(st.integers(0, 2))):
        scope = draw(st.sampled_from(["all", "apps", "tag"]))
        apps = frozenset(draw(st.sets(st.integers(0, app_count - 1), min_size=1))) \
            if scope == "apps" else frozenset()
        tags = frozenset([draw(st.sampled_from(["db", "web"]))]) if scope == "tag" \
            else frozenset()
        if draw(st.booleans()):
            start = draw(st.integers(0, 8000))
            result.append(Window(start=start, end=start + draw(st.integers(60, 6000)),
                                 apps=apps, tags=tags))
        else:
            result.append(Window(hour=draw(st.sampled_from([0, 4, 5, 22, 23])),
                                 minute=draw(st.sampled_from([0, 30])), timezone=timezone,
                                 duration=draw(st.integers(1800, 6 * 3600)), apps=apps,
                                 tags=tags))
    return result


def steps(app_count: int):
    app = st.integers(0, app_count - 1)
    return st.lists(st.one_of(
        st.tuples(st.sampled_from(["ok", "ok", "fail", "start"]), app, st.just(0)),
        st.tuples(st.sampled_from(["ok", "ok", "fail", "start"]), app, st.just(0)),
        st.tuples(st.just("wait"), st.just(0), st.integers(1, 1200)),
        st.tuples(st.just("wait"), st.just(0), st.integers(1, 1200)),
        st.tuples(st.just("ack"), app, st.just(0)),
        st.tuples(st.just("snooze"), app, st.integers(60, 3600)),
        st.tuples(st.just("unsnooze"), app, st.just(0)),
        st.tuples(st.just("outage"), st.just(0), st.integers(GAP + 1, 1500)),
    ), min_size=6, max_size=30)


@st.composite
def scenarios(draw):
    timezone, change = draw(st.sampled_from(DST_CHANGES))
    t0 = change - dt.timedelta(minutes=draw(st.integers(0, 360)))
    apps = draw(applications())
    return t0, timezone, apps, draw(windows(len(apps), timezone)), draw(steps(len(apps)))


# --- The service, driven through its own functions -------------------------------------------

@pytest.fixture(scope="module")
def monitored_app(tmp_path_factory):
    path = tmp_path_factory.mktemp("property") / "db.sqlite"
    migrate(f"sqlite:///{path}")
    clock = ManualClock()
    app = create_app({"DATABASE_URL": f"sqlite:///{path}", "MONITOR_ENABLED": False,
                      "LOG_FORMAT": "text", "LOG_LEVEL": "ERROR", "CLOCK": clock,
                      "OUTAGE_GAP_SECONDS": GAP, "MONITOR_INTERVAL_SECONDS": TICK,
                      "SPOOL_DIR": str(tmp_path_factory.mktemp("spool"))})
    yield app, clock
    with app.app_context():
        db.engine.dispose()


def empty_database() -> None:
    for table in reversed(models.db.metadata.sorted_tables):
        if table.name != "alembic_version":
            db.session.execute(delete(table))
    db.session.commit()


def build(t0, timezone, app_specs, window_specs) -> tuple[list[int], list[str], dict[int, int]]:
    """The channels, applications and windows of a scenario; returns their ids."""
    empty_database()
    channel_ids = [create_channel({"name": f"c{n}", "kind": "webhook",
                                   "url": f"http://127.0.0.1:9/{n}"}, t0).id
                   for n in range(CHANNELS)]
    uuids, app_ids = [], {}
    for index, spec in enumerate(app_specs):
        application = create_application({
            "name": f"a{index}", "period_seconds": spec["period"],
            "grace_seconds": spec["grace"], "failure_threshold": spec["threshold"],
            "channels": [channel_ids[c] for c in spec["channels"]],
            "reminder_interval_seconds": spec["reminder"], "tags": sorted(spec["tags"]),
            "escalation": [{"after_seconds": after, "channels": [channel_ids[c] for c in cs]}
                           for after, cs in spec["escalation"]],
            "depends_on": uuids[spec["parent"]] if spec["parent"] is not None else None}, t0)
        uuids.append(application.uuid)
        app_ids[application.id] = index
    for window in window_specs:
        scope = {"applications": [uuids[i] for i in sorted(window.apps)],
                 "tags": sorted(window.tags)}
        if window.hour is None:
            create_window({"name": "w", "starts_at": t0 + dt.timedelta(seconds=window.start),
                           "ends_at": t0 + dt.timedelta(seconds=window.end), **scope}, t0)
        else:
            create_window({"name": "w", "cron": f"{window.minute} {window.hour} * * *",
                           "timezone": window.timezone, "duration_seconds": window.duration,
                           **scope}, t0)
    return channel_ids, uuids, app_ids


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios())
def test_the_service_sends_exactly_the_alerts_of_the_model(monitored_app, scenario):
    app, clock = monitored_app
    t0, timezone, app_specs, window_specs, actions = scenario
    clock.set(t0)
    monitor = app.extensions["hbmon"].monitor
    with app.app_context():
        channel_ids, uuids, app_ids = build(t0, timezone, app_specs, window_specs)
        db.session.remove()
    model = Model(t0, [AppModel(**{**spec, "channels": [channel_ids[c] for c in spec["channels"]],
                                   "escalation": [(after, [channel_ids[c] for c in cs])
                                                  for after, cs in spec["escalation"]]})
                       for spec in app_specs], window_specs)
    elapsed = 0

    def now() -> dt.datetime:
        return t0 + dt.timedelta(seconds=elapsed)

    for action, index, seconds in [*actions, ("wait", 0, 2400)]:  # and let it all play out
        if action == "wait":
            target = elapsed + seconds
            while elapsed + TICK <= target:
                elapsed += TICK
                clock.set(now())
                monitor.tick()
                model.tick(elapsed)
            continue
        if action == "outage":
            elapsed += seconds
            clock.set(now())
            continue
        with app.app_context():
            application = db.session.execute(
                select(Application).where(Application.uuid == uuids[index])).scalar_one()
            if action in ("ok", "fail", "start"):
                record_heartbeat(uuids[index], Signal(kind=action, received_at=now()))
                model.signal(index, action, elapsed)
            elif action == "ack":
                incident_id = db.session.scalar(select(Incident.id).where(
                    Incident.application_id == application.id, Incident.resolved_at.is_(None)))
                if incident_id is not None:
                    acknowledge(incident_id, "test", None, now())
                model.ack(index)
            elif action == "snooze":
                snooze(application, now() + dt.timedelta(seconds=seconds), now())
                model.apps[index].snoozes = [[start, end] for start, end in
                                             model.apps[index].snoozes if end <= elapsed]
                model.apps[index].snoozes.append([elapsed, elapsed + seconds])
            elif action == "unsnooze":
                end_snooze(application, now())
                for snoozed in model.apps[index].snoozes:
                    if snoozed[0] <= elapsed < snoozed[1]:
                        snoozed[1] = elapsed
            db.session.remove()
    with app.app_context():
        rows = db.session.execute(select(Alert)).scalars().all()
        queued = sorted(
            ((alert.created_at - t0).total_seconds(), alert.event, app_ids[alert.application_id],
             alert.channel_id, alert.payload.get("escalation_step")) for alert in rows)
        statuses = [db.session.execute(select(Application.status).where(
            Application.uuid == uuid)).scalar_one() for uuid in uuids]
        db.session.remove()
    assert statuses == [model_app.status for model_app in model.apps]
    assert queued == sorted(model.alerts), (utc_iso(t0), timezone)
