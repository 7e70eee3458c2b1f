"""Status history (SPEC §10's timeline): every status change recorded by the database's
triggers, whichever path makes it, at the clock's time; the timeline drawn from it; pruning."""
from __future__ import annotations

import datetime as dt
import re
import sqlite3

import pytest
from sqlalchemy import func, insert, select, text

from app import create_app
from applications import create_application
from database import db
from heartbeat_monitor import judge_due_applications
from ingest.pg_store import WRITE_OK_PINGS, PostgresHeartbeatStore
from ingest.signals import Signal
from models import Application, StatusChange
from retention import prune_old_status_changes
from tests.conftest import make_key, migrate
from tests.console_helpers import console
from tests.test_heartbeat_store import recorded

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
MINUTE = dt.timedelta(minutes=1)


@pytest.fixture
def app_config(app_config) -> dict:
    """The monitor ticks only where a test says: no silence of it counts as an outage gap
    (whose deadlines would be extended)."""
    return {**app_config, "OUTAGE_GAP_SECONDS": 30 * 86400}


def history(app, uuid: str) -> list[tuple[str, dt.datetime]]:
    with app.app_context():
        rows = db.session.execute(
            select(StatusChange.status, StatusChange.changed_at).join(Application)
            .where(Application.uuid == uuid)
            .order_by(StatusChange.changed_at, StatusChange.id)).all()
        db.session.remove()
    return [(row.status, row.changed_at) for row in rows]


def test_every_change_by_pings_monitor_and_pause_api_is_recorded_and_drawn(
        app, server, api, anonymous, application, clock, runtime):
    """up → late → down → up → paused → resumed, each at its time; the timeline shows the
    late and the paused periods (SQLite: the ORM path; PostgreSQL: the writer's)."""
    uuid, times = application["uuid"], {"new": clock.now()}
    clock.advance(minutes=5)
    times["up"] = clock.now()
    assert anonymous.get(f"/ping/{uuid}").status_code == 200
    clock.advance(minutes=60, seconds=1)  # period 3600 s: past the deadline
    times["late"] = clock.now()
    runtime.monitor.tick()
    clock.advance(minutes=5)  # grace 300 s: past it
    times["down"] = clock.now()
    runtime.monitor.tick()
    clock.advance(minutes=30)
    times["up again"] = clock.now()
    assert anonymous.get(f"/ping/{uuid}").status_code == 200
    clock.advance(minutes=10)
    assert anonymous.get(f"/ping/{uuid}").status_code == 200  # up → up: no change
    clock.advance(minutes=20)
    times["paused"] = clock.now()
    assert api.post(f"/api/v1/applications/{uuid}/pause").json()["status"] == "paused"
    clock.advance(minutes=40)
    times["resumed"] = clock.now()
    assert api.post(f"/api/v1/applications/{uuid}/resume").json()["status"] == "new"
    clock.advance(minutes=30)
    assert history(app, uuid) == [
        ("new", times["new"]), ("up", times["up"]), ("late", times["late"]),
        ("down", times["down"]), ("up", times["up again"]), ("paused", times["paused"]),
        ("new", times["resumed"])]
    page = console(app, server).get(f"/applications/{uuid}").text
    day = page[page.index('aria-label="Status over the last 24 hours"'):]
    day = day[:day.index("</svg>")]
    assert re.findall(r'data-state="(\w+)"', day) == [
        "none", "new", "up", "late", "down", "up", "paused", "new"]
    late = re.search(r"<title>late: ([^<]+)</title>", day).group(1)
    assert late == (f"{times['late']:%Y-%m-%d %H:%M} UTC – {times['down']:%Y-%m-%d %H:%M} UTC")
    paused = re.search(r"<title>paused: ([^<]+)</title>", day).group(1)
    assert paused.startswith(f"{times['paused']:%Y-%m-%d %H:%M} UTC")


def test_healthchecks_pause_and_resume_are_recorded(app, server, anonymous, clock):
    hc = anonymous.__class__(server.url)
    hc.session.headers["X-Api-Key"] = make_key(app, "hc")
    uuid = hc.post("/api/v3/checks/", json={"name": "Backups"}).json()["uuid"]
    clock.advance(minutes=1)
    assert hc.post(f"/api/v3/checks/{uuid}/pause", data="").json()["status"] == "paused"
    clock.advance(minutes=1)
    assert hc.post(f"/api/v3/checks/{uuid}/resume").json()["status"] == "new"
    start = history(app, uuid)[0][1]
    assert history(app, uuid) == [("new", start), ("paused", start + MINUTE),
                                  ("new", start + 2 * MINUTE)]
    assert hc.delete(f"/api/v3/checks/{uuid}").status_code == 200
    with app.app_context():  # gone with the application (ON DELETE CASCADE)
        assert db.session.scalar(select(func.count()).select_from(StatusChange)) == 0
        db.session.remove()


def ok(at: dt.datetime) -> Signal:
    return Signal(kind="ok", received_at=at, remote_addr="192.0.2.1", user_agent="curl/8")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_one_statement_ping_write_records_its_change(app):
    """A late application's plain ping, written by WRITE_OK_PINGS alone, is recorded by the
    trigger in that same statement; a ping that changes nothing records nothing."""
    with app.app_context():
        uuid = create_application({"name": "job", "period_seconds": 60,
                                   "grace_seconds": 30}, T0).uuid
        store = PostgresHeartbeatStore(db.engine)
        store.write([(uuid, ok(T0 + dt.timedelta(seconds=5)))])
        db.session.rollback()
        assert judge_due_applications(T0 + dt.timedelta(seconds=70), 100) == (1, 1)
        sent = recorded(store)
        store.write([(uuid, ok(T0 + dt.timedelta(seconds=80)))])
        store.write([(uuid, ok(T0 + dt.timedelta(seconds=90)))])
        store.close()
        db.session.remove()
    assert len(sent) == 2 and all(WRITE_OK_PINGS.execute_prepared in sql for sql in sent)
    assert history(app, uuid) == [("new", T0), ("up", T0 + dt.timedelta(seconds=5)),
                                  ("late", T0 + dt.timedelta(seconds=70)),
                                  ("up", T0 + dt.timedelta(seconds=80))]


def test_the_triggers_survive_an_upgrade_from_scratch_and_the_history_is_backfilled(
        tmp_path):
    """`flask db upgrade` from an empty SQLite file (every batch rebuild of `applications` on
    the way): an application made before 0013 gets one row; a plain UPDATE records a change."""
    from flask_migrate import upgrade
    path = tmp_path / "fresh.db"
    flask_app = create_app({"DATABASE_URL": f"sqlite:///{path}", "MONITOR_ENABLED": False,
                            "LOG_FORMAT": "text"})
    with flask_app.app_context():
        upgrade(revision="0012_ping_route_version")
        db.engine.dispose()
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(
            "INSERT INTO applications (uuid, name, description, timezone, grace_seconds,"
            " failure_threshold, consecutive_failures, status, manual_resume, methods, n_pings,"
            " reminder_interval_seconds, created_at, updated_at) VALUES ('u-1', 'old', '', 'UTC',"
            " 60, 1, 0, 'up', 0, '', 0, 0, '2030-01-01 00:00:00.000000',"
            " '2030-01-02 00:00:00.000000')")
    migrate(f"sqlite:///{path}")
    with connection:
        connection.execute("UPDATE applications SET status = 'down',"
                           " updated_at = '2030-01-03 00:00:00.000000'")
        connection.execute("UPDATE applications SET name = 'renamed'")  # no status change
    rows = connection.execute("SELECT status, changed_at FROM status_changes ORDER BY id").fetchall()
    connection.close()
    assert rows == [("up", "2030-01-02 00:00:00.000000"), ("down", "2030-01-03 00:00:00.000000")]


def test_pruning_keeps_the_latest_change_before_the_cutoff(app, clock):
    now = clock.now()
    with app.app_context():
        flapping = create_application({"name": "flapping", "period_seconds": 60}, now).id
        quiet = create_application({"name": "quiet", "period_seconds": 60}, now).id
        db.session.execute(text("DELETE FROM status_changes"))
        old = [now - dt.timedelta(days=days) for days in (40, 35, 31, 10)]
        db.session.execute(insert(StatusChange), [
            {"application_id": flapping, "status": status, "changed_at": at}
            for status, at in zip(("new", "up", "down", "up"), old)]
            + [{"application_id": quiet, "status": "up", "changed_at": old[0]}])
        db.session.commit()
        assert prune_old_status_changes(now) == 2
        kept = db.session.execute(select(StatusChange.application_id, StatusChange.status)
                                  .order_by(StatusChange.id)).all()
        db.session.remove()
    assert kept == [(flapping, "down"), (flapping, "up"), (quiet, "up")]


def test_console_pause_and_a_snooze_drawn_over_the_recorded_history(
        app, server, api, anonymous, application, clock):
    """Paused from the console, then resumed and pinged while snoozed: the pause is recorded
    at its time; the snooze is drawn over the up period it covers."""
    uuid, operator = application["uuid"], console(app, server)
    clock.advance(minutes=10)
    paused_at = clock.now()
    assert operator.form(f"/applications/{uuid}/pause", allow_redirects=False).status_code == 302
    clock.advance(minutes=30)
    assert api.post(f"/api/v1/applications/{uuid}/resume").status_code == 200
    until = clock.now() + dt.timedelta(minutes=20)
    snoozed = api.post(f"/api/v1/applications/{uuid}/snooze",
                       json={"until": until.isoformat()})
    assert snoozed.status_code in (200, 201), snoozed.text
    assert anonymous.get(f"/ping/{uuid}").status_code == 200
    clock.advance(minutes=60)
    assert [status for status, _ in history(app, uuid)] == ["new", "paused", "new", "up"]
    assert history(app, uuid)[1][1] == paused_at
    page = operator.get(f"/applications/{uuid}").text
    day = page[page.index('aria-label="Status over the last 24 hours"'):]
    assert re.findall(r'data-state="(\w+)"', day[:day.index("</svg>")]) == [
        "none", "new", "paused", "maintenance", "up"]
