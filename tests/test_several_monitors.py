"""§6.5: several monitor processes against one PostgreSQL: each alert is sent exactly once."""
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
from models import Application
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
