"""Heartbeats older than HEARTBEAT_RETENTION_DAYS are pruned by the monitor's housekeeping."""
from __future__ import annotations

import datetime as dt

import psycopg2
import pytest
from sqlalchemy import insert, select

import retention
from applications import create_application
from database import db
from models import Application, Heartbeat, new_uuid
from retention import prune_old_heartbeats
from tests.conftest import _dsn

DAY = dt.timedelta(days=1)


def add_heartbeats(app, application_uuid: str, received: list[dt.datetime]) -> None:
    """Heartbeats stored in the order given (ids follow that order), message = index."""
    with app.app_context():
        application_id = db.session.execute(select(Application.id).where(
            Application.uuid == application_uuid)).scalar_one()
        db.session.execute(insert(Heartbeat), [
            {"uuid": new_uuid(), "application_id": application_id, "kind": "ok",
             "message": str(index), "source": "ping", "received_at": at}
            for index, at in enumerate(received)])
        db.session.commit()
        db.session.remove()


def kept_messages(app) -> list[str]:
    with app.app_context():
        return list(db.session.execute(select(Heartbeat.message).order_by(Heartbeat.id)).scalars())


def test_heartbeats_past_the_retention_are_pruned_by_the_monitor(api, anonymous, application,
                                                                 runtime, clock):
    uuid = application["uuid"]
    assert anonymous.post(f"/ping/{uuid}", data="old").status_code == 200
    clock.advance(days=20)
    assert anonymous.post(f"/ping/{uuid}", data="recent").status_code == 200
    clock.advance(days=10, seconds=1)  # the first is now 30 days and 1 s old
    for _ in runtime.monitor.housekeeping:  # one housekeeping task a tick
        runtime.monitor.tick()
    listed = api.get(f"/api/v1/applications/{uuid}/heartbeats").json()
    assert [beat["message"] for beat in listed["items"]] == ["recent"]
    assert api.get(f"/api/v1/applications/{uuid}").json()["last_heartbeat_at"] is not None


def test_a_heartbeat_exactly_at_the_retention_is_kept(app, application, clock):
    now = clock.now()
    add_heartbeats(app, application["uuid"], [now - 30 * DAY - dt.timedelta(seconds=1),
                                              now - 30 * DAY])
    with app.app_context():
        assert prune_old_heartbeats(now) == 1
    assert kept_messages(app) == ["1"]


def test_pruning_walks_the_oldest_ids_in_batches_and_stops_at_recent_ones(
        app, application, clock, monkeypatch):
    monkeypatch.setattr(retention, "PRUNE_BATCH_SIZE", 10)
    monkeypatch.setattr(retention, "PRUNE_MAX_BATCHES", 2)
    now = clock.now()
    add_heartbeats(app, application["uuid"], [now - 40 * DAY] * 25 + [now - DAY] * 3)
    with app.app_context():
        assert prune_old_heartbeats(now) == 20  # two batches, then the next call goes on
        assert prune_old_heartbeats(now) == 5
        assert prune_old_heartbeats(now) == 0
    assert kept_messages(app) == ["25", "26", "27"]


def test_a_replayed_heartbeat_older_than_its_id_outlives_the_retention_until_the_walk_reaches_it(
        app, application, clock):
    """Ids follow arrival; a spooled heartbeat replayed late has an old received_at. The walk
    stops at the oldest id while it is recent, so nothing goes early and the replayed one goes
    with it."""
    now = clock.now()
    add_heartbeats(app, application["uuid"], [now - DAY, now - 31 * DAY])
    with app.app_context():
        assert prune_old_heartbeats(now) == 0
        assert prune_old_heartbeats(now + 29 * DAY) == 0  # the oldest id is exactly 30 days old
        assert prune_old_heartbeats(now + 29 * DAY + dt.timedelta(seconds=1)) == 2
    assert kept_messages(app) == []


def test_retention_zero_keeps_every_heartbeat(make_app, clock):
    app = make_app(HEARTBEAT_RETENTION_DAYS=0)
    now = clock.now()
    with app.app_context():
        application_uuid = create_application({"name": "kept", "period_seconds": 60}, now).uuid
        db.session.commit()
    add_heartbeats(app, application_uuid, [now - 400 * DAY])
    with app.app_context():
        assert prune_old_heartbeats(now) == 0
    assert kept_messages(app) == ["0"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_heartbeats_another_process_is_pruning_are_skipped_not_waited_for(app, application,
                                                                          clock, database_url):
    now = clock.now()
    add_heartbeats(app, application["uuid"], [now - 40 * DAY] * 3)
    other = psycopg2.connect(_dsn(database_url))
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT id FROM heartbeats FOR UPDATE")  # held until rolled back
            with app.app_context():
                assert prune_old_heartbeats(now) == 0  # waiting would hit the 3 s I/O timeout
            other.rollback()
        with app.app_context():
            assert prune_old_heartbeats(now) == 3
    finally:
        other.close()
