"""§6.5: several monitor processes against one PostgreSQL: each alert is sent exactly once, and
each decision of §8 (reminder, escalation step, released alert) is made once."""
from __future__ import annotations

import collections
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app import create_app
from database import db
from heartbeat_monitor import judge_due_applications
from models import Alert, Application, ServiceState
from outage import ALIVE_KEY
from tests.conftest import Client, close_app, make_key, migrate
from tests.helpers import wait_until
from utils.clock import ManualClock

ROOT = Path(__file__).resolve().parent.parent
APPLICATIONS = 40


def test_three_monitor_processes_deliver_every_alert_exactly_once(postgres_databases, sink,
                                                                  serve, tmp_path):
    url = postgres_databases.create()
    migrate(url)
    start = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    app = create_app({"DATABASE_URL": url, "MONITOR_ENABLED": False, "LOG_FORMAT": "text",
                      "CLOCK": ManualClock(start), "SPOOL_DIR": str(tmp_path / "spool")})
    live = serve(app)
    api, anonymous = Client(live.url, make_key(app)), Client(live.url)
    channel = api.post("/api/v1/channels", json={"name": "hook", "kind": "webhook",
                                                 "url": sink.url}).json()
    uuids = []
    for n in range(APPLICATIONS):
        created = api.post("/api/v1/applications", json={
            "name": f"job-{n}", "period_seconds": 60, "grace_seconds": 30,
            "channels": [channel["id"]]}).json()
        anonymous.get(f"/ping/{created['uuid']}")
        uuids.append(created["uuid"])
    close_app(app)

    clock_file = tmp_path / "clock"
    clock_file.write_text((start + dt.timedelta(seconds=600)).isoformat())
    env = {**os.environ, "DATABASE_URL": url, "CLOCK_FILE": str(clock_file),
           "MONITOR_INTERVAL_SECONDS": "0.2", "LOG_FORMAT": "text", "LOG_LEVEL": "WARNING",
           "SPOOL_DIR": str(tmp_path / "spool")}
    # Logs go to files: a pipe nobody reads until the end would block a chatty process.
    logs = [tmp_path / f"monitor-{n}.log" for n in range(3)]
    monitors = [subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "monitor"],
                                 cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                 stderr=log.open("wb")) for log in logs]
    try:
        wait_until(lambda: len(sink.received) >= APPLICATIONS, 60, 0.1)
    finally:
        for process in monitors:  # a clean stop: once they exit, nothing is in flight
            process.send_signal(signal.SIGTERM)
        exit_codes = [process.wait(30) for process in monitors]

    tails = [log.read_text()[-3000:] for log in logs]
    assert exit_codes == [0, 0, 0], tails
    per_application = collections.Counter(r["json"]["application"]["uuid"] for r in sink.received)
    assert per_application == {uuid: 1 for uuid in uuids}, tails
    assert len(set(sink.alert_ids())) == APPLICATIONS == len(sink.received)
    assert {r["json"]["event"] for r in sink.received} == {"application.down"}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # row locks
def test_a_monitor_skips_an_application_another_holds_locked_instead_of_waiting(
        app, api, anonymous, clock, database_url):
    """Two monitors judging at once: the second must pass by a due application whose row the
    first has locked (FOR UPDATE SKIP LOCKED), not wait for it, nor judge it twice."""
    uuids = [api.post("/api/v1/applications", json={
        "name": name, "period_seconds": 60, "grace_seconds": 30}).json()["uuid"]
        for name in ("held", "free")]
    for uuid in uuids:
        anonymous.get(f"/ping/{uuid}")
    clock.advance(seconds=600)
    other_monitor = psycopg2.connect(make_url(database_url).set(drivername="postgresql")
                                     .render_as_string(hide_password=False))
    try:
        with other_monitor.cursor() as cursor:  # its transaction stays open: the lock is held
            cursor.execute("SELECT id FROM applications WHERE uuid = %s FOR UPDATE",
                           (uuids[0],))
        judged: dict = {}

        def judge():
            with app.app_context():
                judged["result"] = judge_due_applications(clock.now(), 500)
                db.session.remove()

        thread = threading.Thread(target=judge, daemon=True)
        thread.start()
        thread.join(2)  # less than DB_IO_TIMEOUT_SECONDS, which would end a wait with an error
        waited = thread.is_alive()
    finally:
        other_monitor.rollback()  # releases the lock (and a judge that waited for it)
        other_monitor.close()
    thread.join(20)
    assert not waited, "the judge waited for the locked row instead of skipping it"
    assert judged["result"] == (1, 1)  # the free application only
    with app.app_context():
        statuses = dict(db.session.execute(select(Application.uuid, Application.status)).all())
        db.session.remove()
    assert statuses == {uuids[0]: "up", uuids[1]: "down"}


GROUP = 8


def alive_at(app) -> dt.datetime:
    """When a monitor last finished a tick, by its clock (its alive mark, outage.py)."""
    with app.app_context():
        moment = db.session.execute(select(ServiceState.updated_at).where(
            ServiceState.key == ALIVE_KEY)).scalar()
        db.session.remove()
    return moment or dt.datetime.min.replace(tzinfo=dt.timezone.utc)


def test_three_monitor_processes_decide_each_reminder_escalation_and_release_once(
        postgres_databases, sink, other_sink, serve, tmp_path):
    """§8 on §6.5: reminders, escalation steps, alerts released by a window's end and by a
    parent's recovery, each queued and delivered once while three monitors race for them."""
    url = postgres_databases.create()
    migrate(url)
    start = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    clock = ManualClock(start)
    app = create_app({"DATABASE_URL": url, "MONITOR_ENABLED": False, "LOG_FORMAT": "text",
                      "CLOCK": clock, "SPOOL_DIR": str(tmp_path / "spool")})
    live = serve(app)
    api, anonymous = Client(live.url, make_key(app)), Client(live.url)
    ops = api.post("/api/v1/channels", json={"name": "ops", "kind": "webhook",
                                             "url": sink.url}).json()["id"]
    lead = api.post("/api/v1/channels", json={"name": "lead", "kind": "webhook",
                                              "url": other_sink.url}).json()["id"]

    def create(name: str, **fields) -> str:
        return api.post("/api/v1/applications", json={
            "name": name, "period_seconds": 60, "grace_seconds": 30, "channels": [ops],
            **fields}).json()["uuid"]

    reminded = [create(f"reminded-{n}", reminder_interval_seconds=60, escalation=[
        {"after_seconds": 120, "channels": [lead]}]) for n in range(GROUP)]
    in_window = [create(f"maintained-{n}", tags=["maint"]) for n in range(GROUP)]
    parent = create("parent")
    children = [create(f"child-{n}", depends_on=parent) for n in range(GROUP)]
    assert api.post("/api/v1/maintenance-windows", json={
        "name": "upgrade", "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-01T00:10:00Z",
        "tags": ["maint"]}).status_code == 201
    for uuid in reminded + in_window + [parent] + children:
        anonymous.get(f"/ping/{uuid}")

    clock_file = tmp_path / "clock"
    env = {**os.environ, "DATABASE_URL": url, "CLOCK_FILE": str(clock_file),
           "MONITOR_INTERVAL_SECONDS": "0.2", "LOG_FORMAT": "text", "LOG_LEVEL": "WARNING",
           "SPOOL_DIR": str(tmp_path / "spool")}
    logs = [tmp_path / f"monitor-{n}.log" for n in range(3)]

    def received(event: str, sinks=(sink, other_sink)) -> int:
        return len({request["json"]["alert_id"] for each in sinks
                    for request in list(each.received) if request["json"]["event"] == event})

    def at(seconds: int, expected: dict[str, int]) -> None:
        """Move every monitor's clock to start + seconds; wait for the alerts expected by then."""
        clock_file.write_text((start + dt.timedelta(seconds=seconds)).isoformat())
        wait_until(lambda: all(received(event) >= count for event, count in expected.items()),
                   60, 0.1, f"at +{seconds} s: {expected}")

    clock_file.write_text(start.isoformat())
    monitors = [subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "monitor"],
                                 cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                 stderr=log.open("wb")) for log in logs]
    try:
        # +100 s: every silent application is down; the window and the parent hold some.
        at(100, {"application.down": GROUP + 1})
        at(161, {"application.down": GROUP + 1, "application.still_down": GROUP})
        at(221, {"application.down": 2 * GROUP + 1, "application.still_down": 2 * GROUP})
        clock.set(start + dt.timedelta(seconds=221))
        anonymous.get(f"/ping/{parent}")  # the parent recovers: its children's alerts go
        at(222, {"application.down": 3 * GROUP + 1, "application.up": 1})
        # +601 s: the window has ended: what it held goes, with one reminder each.
        at(601, {"application.down": 4 * GROUP + 1, "application.still_down": 3 * GROUP})
        # A whole tick at +602 s (nothing new falls due before +661 s) after everything due by
        # +601 s was claimed: once the monitors have stopped, every decision is in the outbox.
        clock_file.write_text((start + dt.timedelta(seconds=602)).isoformat())
        wait_until(lambda: alive_at(app) >= start + dt.timedelta(seconds=602), 60, 0.1,
                   "no monitor ticked at +602 s")
    finally:
        for process in monitors:
            process.send_signal(signal.SIGTERM)
        exit_codes = [process.wait(30) for process in monitors]
    tails = [log.read_text()[-3000:] for log in logs]
    assert exit_codes == [0, 0, 0], tails
    # Delivery is at least once (a lease that runs out on a starved machine resends the same
    # alert); what must be once is each decision: one alert per reminder, step or release.
    everything = list({request["json"]["alert_id"]: request
                       for request in sink.received + other_sink.received}.values())
    decisions = collections.Counter(
        (request["json"]["application"]["uuid"], request["json"]["event"],
         request["json"].get("escalation_step")) for request in everything)
    expected = collections.Counter()
    for uuid in reminded:
        expected.update({(uuid, "application.down", None): 1, (uuid, "application.down", 1): 1,
                         (uuid, "application.still_down", None): 3})
    for uuid in in_window + children:
        expected[(uuid, "application.down", None)] = 1
    expected.update({(parent, "application.down", None): 1, (parent, "application.up", None): 1})
    assert decisions == expected, tails
    with app.app_context():  # each decision queued once (delivery may resend; decisions not)
        rows = db.session.execute(select(Application.uuid, Alert.event, Alert.payload).join(
            Application, Application.id == Alert.application_id)).all()
        db.session.remove()
    queued = collections.Counter((uuid, event, payload.get("escalation_step"))
                                 for uuid, event, payload in rows)
    assert queued == expected, tails
    assert all(request["json"].get("escalation_step") == 1 for request in other_sink.received)
