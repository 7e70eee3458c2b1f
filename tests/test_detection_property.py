"""Random schedules, heartbeats and clock steps through the real monitor, against an oracle."""
from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app import create_app
from applications import create_application
from channels import create_channel
from database import db
from ingest.orm_store import record_heartbeat
from ingest.signals import Signal
from models import Alert, Application
from tests.conftest import migrate
from utils.clock import ManualClock

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


class Oracle:
    """What SPEC §6.1 says should happen, written without the service's code."""

    def __init__(self, period: int, grace: int, threshold: int):
        self.period, self.grace, self.threshold = period, grace, threshold
        self.status, self.deadline, self.started, self.fails = "new", None, None, 0
        self.events: list[str] = []

    def _down(self):
        if self.status != "down":
            self.events.append("application.down")
        self.status = "down"

    def signal(self, kind: str, t: float):
        if kind == "start":
            self.started = t
            return
        self.deadline, self.started = t + self.period, None
        if kind == "ok":
            if self.status == "down":
                self.events.append("application.up")
            self.status, self.fails = "up", 0
            return
        self.fails += 1
        if self.fails >= self.threshold:
            self._down()
        elif self.status != "down":
            self.status = "up"

    def tick(self, t: float):
        if self.status not in ("new", "up", "late"):
            return
        if self.started is not None and t >= self.started + self.grace:
            self._down()
        elif self.status != "new" and t >= self.deadline + self.grace:
            self._down()
        elif self.status != "new" and t >= self.deadline:
            self.status = "late"


steps = st.lists(st.one_of(
    st.tuples(st.sampled_from(["ok", "fail", "start"]), st.just(0)),
    st.tuples(st.just("wait"), st.integers(min_value=1, max_value=900)),
), min_size=1, max_size=25)


@pytest.fixture(scope="module")
def monitored_app(tmp_path_factory):
    path = tmp_path_factory.mktemp("property") / "db.sqlite"
    migrate(f"sqlite:///{path}")
    clock = ManualClock(T0)
    app = create_app({"DATABASE_URL": f"sqlite:///{path}", "MONITOR_ENABLED": False,
                      "LOG_FORMAT": "text", "CLOCK": clock,
                      "SPOOL_DIR": str(tmp_path_factory.mktemp("spool"))})
    with app.app_context():
        channel = create_channel({"name": "c", "kind": "webhook", "url": "http://127.0.0.1:9/"},
                                 T0)
        channel_id = channel.id
    yield app, clock, channel_id
    with app.app_context():
        db.engine.dispose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(period=st.integers(10, 600), grace=st.integers(0, 300), threshold=st.integers(1, 3),
       steps=steps)
def test_monitor_matches_the_oracle(monitored_app, period, grace, threshold, steps):
    app, clock, channel_id = monitored_app
    clock.set(T0)
    oracle = Oracle(period, grace, threshold)
    monitor = app.extensions["hbmon"].monitor
    with app.app_context():
        application = create_application({
            "name": "p", "period_seconds": period, "grace_seconds": grace,
            "failure_threshold": threshold, "channels": [channel_id]}, T0)
        uuid, app_id = application.uuid, application.id
    elapsed = 0
    for kind, seconds in steps:
        if kind == "wait":
            # The monitor wakes every few seconds: tick along the way, as it would.
            for _ in range(seconds // 5):
                elapsed += 5
                clock.set(T0 + dt.timedelta(seconds=elapsed))
                monitor.tick()
                oracle.tick(elapsed)
            continue
        with app.app_context():
            record_heartbeat(uuid, Signal(kind=kind, received_at=clock.now()))
        oracle.signal(kind, elapsed)
        with app.app_context():
            assert db.session.get(Application, app_id).status == oracle.status
    with app.app_context():
        status = db.session.get(Application, app_id).status
        events = db.session.execute(select(Alert.event).where(Alert.application_id == app_id)
                                    .order_by(Alert.id)).scalars().all()
    assert status == oracle.status
    assert events == oracle.events
