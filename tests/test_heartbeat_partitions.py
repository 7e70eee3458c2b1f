"""PostgreSQL: heartbeats in daily partitions, created ahead by housekeeping, dropped whole by
retention; a heartbeat whose day has no partition is stored all the same."""
from __future__ import annotations

import datetime as dt

import psycopg2
import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import select, text

import heartbeat_partitions
from app import create_app
from database import db
from heartbeat_partitions import (
    DAYS_AHEAD,
    create_heartbeat_partitions,
    daily_partitions,
    drop_retired_partitions,
    partition_name,
    retire_heartbeat_partitions,
)
from models import Application, Heartbeat
from retention import prune_old_heartbeats
from tests.conftest import _dsn
from tests.test_retention import add_heartbeats

ON_POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

DAY = dt.timedelta(days=1)


def where_stored(app) -> list[tuple[str, str]]:
    """(message, partition) of every heartbeat, oldest id first."""
    with app.app_context():
        rows = db.session.execute(text("SELECT message, tableoid::regclass::text "
                                       "FROM heartbeats ORDER BY id")).all()
        db.session.remove()
    return [tuple(row) for row in rows]


def partition_days(app) -> list[dt.date]:
    with app.app_context():
        days = sorted(daily_partitions())
        db.session.remove()
    return days


@ON_POSTGRESQL
def test_housekeeping_creates_today_and_the_days_ahead_and_pings_land_in_todays(
        app, anonymous, application, runtime, clock):
    today = clock.now().date()
    for _ in runtime.monitor.housekeeping:  # one housekeeping task a tick
        runtime.monitor.tick()
    assert partition_days(app) == [today + n * DAY for n in range(DAYS_AHEAD + 1)]
    with app.app_context():
        assert create_heartbeat_partitions(clock.now()) == []  # all there already
    assert anonymous.post(f"/ping/{application['uuid']}", data="today").status_code == 200
    assert where_stored(app) == [("today", partition_name(today))]


@ON_POSTGRESQL
def test_a_heartbeat_far_in_the_future_or_past_is_stored_in_the_default_partition(
        app, anonymous, application, clock):
    with app.app_context():
        create_heartbeat_partitions(clock.now())
    add_heartbeats(app, application["uuid"], [clock.now() - 400 * DAY])
    clock.advance(days=400)
    assert anonymous.post(f"/ping/{application['uuid']}", data="future").status_code == 200
    assert where_stored(app) == [("0", "heartbeats_default"), ("future", "heartbeats_default")]


@ON_POSTGRESQL
def test_a_partition_made_for_a_day_the_default_partition_holds_takes_its_heartbeats(
        app, anonymous, application, api, clock):
    clock.advance(days=10)
    assert anonymous.post(f"/ping/{application['uuid']}", data="early").status_code == 200
    with app.app_context():
        created = create_heartbeat_partitions(clock.now())
    assert created[0] == partition_name(clock.now().date())
    assert where_stored(app) == [("early", partition_name(clock.now().date()))]
    assert anonymous.post(f"/ping/{application['uuid']}", data="later").status_code == 200
    # Moved, not copied: listed once, counted once.
    listed = api.get(f"/api/v1/applications/{application['uuid']}/heartbeats").json()
    assert [beat["message"] for beat in listed["items"]] == ["later", "early"]
    with app.app_context():
        assert db.session.execute(select(Application.n_pings)).scalar_one() == 2


@ON_POSTGRESQL
def test_retention_drops_the_partitions_of_days_wholly_past_it(app, application, clock):
    start = clock.now()  # midnight
    with app.app_context():
        create_heartbeat_partitions(start)
    add_heartbeats(app, application["uuid"], [start + dt.timedelta(hours=h)
                                              for h in (1, 25, 49, 50)])
    clock.set(start + 32 * DAY + dt.timedelta(hours=1, minutes=30))  # cutoff: day 2, 01:30
    with app.app_context():
        assert prune_old_heartbeats(clock.now()) == 0  # nothing deleted row by row
        remaining = sorted(daily_partitions())
    # Days 0 and 1 are past the retention; day 2 straddles the cutoff and is kept whole.
    assert remaining == [(start + n * DAY).date() for n in (2, 3)]
    assert where_stored(app) == [("2", partition_name(remaining[0])),
                                 ("3", partition_name(remaining[0]))]


@ON_POSTGRESQL
def test_retention_deletes_the_default_partitions_old_heartbeats_row_by_row(
        app, application, clock):
    now = clock.now()
    add_heartbeats(app, application["uuid"], [now - 31 * DAY, now - 29 * DAY])
    with app.app_context():
        assert prune_old_heartbeats(now) == 1
    assert where_stored(app) == [("1", "heartbeats_default")]


@ON_POSTGRESQL
def test_a_partition_whose_table_is_in_use_is_retired_at_a_later_housekeeping(
        app, application, clock, database_url):
    start = clock.now()
    with app.app_context():
        create_heartbeat_partitions(start)
    add_heartbeats(app, application["uuid"], [start])
    reader = psycopg2.connect(_dsn(database_url))
    try:
        with reader.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM heartbeats")  # holds its lock until rolled back
            with app.app_context():  # not waited for beyond the lock timeout
                assert retire_heartbeat_partitions(start + DAY) == []
            reader.rollback()
        with app.app_context():
            assert prune_old_heartbeats(start + 31 * DAY) == 0
            assert daily_partitions() and min(daily_partitions()) == (start + DAY).date()
    finally:
        reader.close()
    assert where_stored(app) == []


@ON_POSTGRESQL
def test_a_retired_partition_left_behind_is_dropped_by_the_next_prune(app, application, clock):
    """A prune cut short between detaching and dropping leaves a detached table: the next one
    drops it, and a table whose name is not a day's is never touched."""
    start = clock.now()
    with app.app_context():
        create_heartbeat_partitions(start)
        assert retire_heartbeat_partitions(start + DAY) == [partition_name(start.date())]
        db.session.execute(text("CREATE TABLE heartbeats_p2030_notes (note text)"))
        db.session.commit()
        assert prune_old_heartbeats(start) == 0  # nothing past the retention: only the leftover
        leftovers = db.session.execute(text(
            "SELECT relname FROM pg_class WHERE relname LIKE 'heartbeats_p2%' "
            "AND relkind = 'r'")).scalars().all()
        db.session.execute(text("DROP TABLE heartbeats_p2030_notes"))
        db.session.commit()
        assert drop_retired_partitions() == []
    assert set(leftovers) == {"heartbeats_p2030_notes"} | {
        partition_name((start + n * DAY).date()) for n in range(1, DAYS_AHEAD + 1)}


def test_the_migration_moves_existing_heartbeats_into_partitions(postgres_databases):
    url = postgres_databases.create()
    app = create_app({"DATABASE_URL": url, "MONITOR_ENABLED": False, "LOG_FORMAT": "text"})
    try:
        with app.app_context():
            upgrade(revision="0009_delivery_liveness")
            db.session.execute(text(
                "INSERT INTO applications (uuid, name, description, timezone, grace_seconds,"
                " failure_threshold, consecutive_failures, status, manual_resume, methods,"
                " n_pings, reminder_interval_seconds, created_at, updated_at) VALUES"
                " ('a', 'a', '', 'UTC', 60, 1, 0, 'up', false, '', 0, 0, now(), now())"))
            db.session.execute(text(
                "INSERT INTO heartbeats (uuid, application_id, kind, message, source,"
                " received_at) SELECT 'h' || n, 1, 'ok', n::text, 'ping',"
                " (now() AT TIME ZONE 'UTC') - n * interval '250 days'"
                " FROM generate_series(0, 2) AS n"))
            db.session.commit()
            upgrade(revision="0011_heartbeat_partitions")
            today = dt.datetime.now(dt.timezone.utc).date()
            rows = db.session.execute(text("SELECT message, tableoid::regclass::text "
                                           "FROM heartbeats ORDER BY id")).all()
            assert [tuple(row) for row in rows] == [
                ("0", partition_name(today)),
                ("1", partition_name(today - 250 * DAY)),
                ("2", "heartbeats_default")]  # older than the 400 days given partitions
            assert set(daily_partitions()) >= {today + n * DAY for n in range(DAYS_AHEAD + 1)}
            assert db.session.execute(select(Application.n_pings)).scalar_one() == 3
            db.session.execute(text(
                "INSERT INTO heartbeats (uuid, application_id, kind, message, source,"
                " received_at) VALUES ('h3', 1, 'ok', '3', 'ping', now())"))
            db.session.commit()
            assert db.session.execute(select(Application.n_pings)).scalar_one() == 4
            assert db.session.execute(select(Heartbeat.id).where(
                Heartbeat.uuid == "h3")).scalar_one() == 4  # the ids go on
            db.session.commit()
            downgrade(revision="0009_delivery_liveness")
            assert db.session.execute(text("SELECT count(*) FROM heartbeats")).scalar() == 4
            db.session.commit()
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@ON_POSTGRESQL
def test_a_partition_another_monitor_made_meanwhile_is_left_as_it_is(app, application, clock):
    """Two monitors may both find a day's partition missing; the second, once it holds the
    lock the first held, finds it made and does nothing (no error in its tick)."""
    with app.app_context():
        assert create_heartbeat_partitions(clock.now())[0] == partition_name(clock.now().date())
        assert heartbeat_partitions._create_partition(clock.now().date()) is False
        assert heartbeat_partitions.retire_heartbeat_partitions(clock.now()) == []
    assert partition_days(app)[0] == clock.now().date()
