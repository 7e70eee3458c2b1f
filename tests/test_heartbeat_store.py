"""The ingest writer's PostgreSQL paths (one statement for plain pings, two round trips
otherwise) against the ORM path they stand in for."""
from __future__ import annotations

import datetime as dt

import psycopg2.extensions
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from applications import create_application, update_application
from channels import create_channel
from database import db
from exceptions import HeartbeatNotFound
from ingest.orm_store import write_heartbeats
from ingest.pg_store import WRITE_OK_PINGS, PostgresHeartbeatStore
from ingest.signals import Signal
from models import Alert, Application, Heartbeat, Incident
from status_rules import next_check_at

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
RIDS = ["6f1c1a4e-8d7e-4b55-9a3e-3f0c7f3b9d11", "0b6c9a52-3c1f-4b8e-8d55-2f7e1a9c4d20"]
CONFIGS = [{"period_seconds": 60, "grace_seconds": 30},
           {"period_seconds": 300, "grace_seconds": 60, "failure_threshold": 3},
           {"cron": "*/5 * * * *", "timezone": "Europe/Paris", "grace_seconds": 120}]
STATE = ("status", "consecutive_failures", "last_heartbeat_at", "last_start_at",
         "last_start_rid", "next_deadline_at", "next_check_at", "updated_at")
STORED = ("kind", "exit_code", "message", "duration_ms", "metadata_json", "rid", "source",
          "remote_addr", "user_agent", "received_at")


def make_applications(configs) -> list[str]:
    return [create_application({"name": f"job-{n}", **config}, T0).uuid
            for n, config in enumerate(configs)]


def signal(kind: str, at: dt.datetime, **fields) -> Signal:
    return Signal(kind=kind, received_at=at, remote_addr="192.0.2.1", user_agent="curl/8",
                  **fields)


def application_state(uuid: str) -> dict:
    application = db.session.execute(select(Application).where(Application.uuid == uuid)) \
        .scalar_one()
    return {name: getattr(application, name) for name in STATE}


def kept_or_moved_check(uuid: str) -> bool:
    """next_check_at is the check status_rules gives, or an earlier one it lets a ping keep.

    check_after_heartbeat keeps a check in the second half of the wait; the writer applies that
    rule once to the latest of an application's pings in one batch, the ORM path once per
    ping, so the two may keep different checks: both are allowed, never one after the real
    check, nor one in the first half of the wait."""
    application = db.session.execute(select(Application).where(Application.uuid == uuid)) \
        .scalar_one()
    check, real = application.next_check_at, next_check_at(application)
    if check == real:
        return True
    seen = application.last_heartbeat_at
    return None not in (check, real, seen) and check < real and (check - seen) * 2 >= real - seen


def stored_heartbeats(uuid: str) -> list[dict]:
    rows = db.session.execute(select(Heartbeat).join(Application)
                              .where(Application.uuid == uuid).order_by(Heartbeat.id)).scalars()
    return [{name: getattr(row, name) for name in STORED} for row in rows]


def test_a_batch_without_status_change_is_stored_in_two_round_trips(app, runtime):
    with app.app_context():
        uuid, other = make_applications(CONFIGS[:2])
        store = PostgresHeartbeatStore(db.engine)
        at = T0 + dt.timedelta(seconds=10)
        items = [(uuid, signal("start", at, rid=RIDS[0])),
                 (other, signal("log", at, message="note", metadata_json={"n": 1})),
                 (uuid, signal("ok", at + dt.timedelta(seconds=2), rid=RIDS[0]))]
        results = store.write(items)
        store.close()
        db.session.rollback()
        assert [result["kind"] for result in results] == ["start", "log", "ok"]
        assert results[2]["duration_ms"] == 2000
        state = application_state(uuid)
        assert state["status"] == "up" and state["last_start_at"] is None
        assert state["next_deadline_at"] == at + dt.timedelta(seconds=62)
        assert application_state(other)["status"] == "new"  # a log changes nothing
        assert [(row["kind"], row["duration_ms"]) for row in stored_heartbeats(uuid)] == \
            [("start", None), ("ok", 2000)]
        assert stored_heartbeats(other)[0]["metadata_json"] == {"n": 1}


class RecordingCursor(psycopg2.extensions.cursor):
    """Keeps the SQL of every execute on the store's connection (one per round trip)."""

    sent: list[str] = []

    def execute(self, sql, parameters=None):
        RecordingCursor.sent.append(sql)
        return super().execute(sql, parameters)


def recorded(store: PostgresHeartbeatStore) -> list[str]:
    """From now on, what the store sends."""
    RecordingCursor.sent = []
    store._connection.dbapi_connection.cursor_factory = RecordingCursor
    return RecordingCursor.sent


def test_plain_pings_of_an_application_written_before_take_one_statement(app):
    with app.app_context():
        uuid, cron = make_applications([CONFIGS[0], CONFIGS[2]])
        store = PostgresHeartbeatStore(db.engine)
        store.write([(uuid, signal("ok", T0)), (cron, signal("ok", T0))])
        sent = recorded(store)
        at = T0 + dt.timedelta(seconds=10)
        results = store.write([(uuid, signal("ok", at)), (cron, signal("ok", at)),
                               (uuid, signal("ok", at + dt.timedelta(seconds=5)))])
        store.close()
        assert len(sent) == 1 and WRITE_OK_PINGS.execute_prepared in sent[0]
        assert [result["application_uuid"] for result in results] == [uuid, cron, uuid]
        state = application_state(uuid)
        assert state["next_deadline_at"] == at + dt.timedelta(seconds=65)  # last ping + period
        # The check of the first ping (T0 + 60 s) is in the second half of the new wait: kept.
        assert state["next_check_at"] == T0 + dt.timedelta(seconds=60)
        assert state["last_heartbeat_at"] == at + dt.timedelta(seconds=5)
        # */5 in Paris, after 00:00:10 UTC: 01:05 local.
        assert application_state(cron)["next_deadline_at"] == T0 + dt.timedelta(minutes=5)
        assert len(stored_heartbeats(uuid)) == 3 and len(stored_heartbeats(cron)) == 2


def test_a_plain_ping_after_another_process_started_a_run_measures_it(app):
    """The one statement writes nothing when a row no longer matches; the two trips do."""
    with app.app_context():
        uuid, other = make_applications(CONFIGS[:2])
        store = PostgresHeartbeatStore(db.engine)
        store.write([(uuid, signal("ok", T0)), (other, signal("ok", T0))])
        write_heartbeats([(uuid, signal("start", T0 + dt.timedelta(seconds=1)))])
        sent = recorded(store)
        at = T0 + dt.timedelta(seconds=4)
        results = store.write([(other, signal("ok", at)), (uuid, signal("ok", at))])
        store.close()
        assert len(sent) == 3  # the one statement, refused; then the two round trips
        assert [result["duration_ms"] for result in results] == [None, 3000]
        assert [(row["kind"], row["duration_ms"]) for row in stored_heartbeats(uuid)] == \
            [("ok", None), ("start", None), ("ok", 3000)]
        assert len(stored_heartbeats(other)) == 2  # all or nothing: not written twice


def test_a_plain_ping_after_another_process_marked_it_down_resolves_through_the_orm(
        app, runtime):
    with app.app_context():
        (uuid,) = make_applications(CONFIGS[:1])
        store = PostgresHeartbeatStore(db.engine)
        store.write([(uuid, signal("ok", T0))])
        write_heartbeats([(uuid, signal("fail", T0 + dt.timedelta(seconds=1), exit_code=1))])
        assert application_state(uuid)["status"] == "down"
        items = [(uuid, signal("ok", T0 + dt.timedelta(seconds=2)))]
        assert store.write(items) is None
        store.close()
        assert len(stored_heartbeats(uuid)) == 2  # nothing written by the refused statement
        runtime.writer.store_batch(items)
        assert application_state(uuid)["status"] == "up"
        assert db.session.scalar(select(Incident.resolved_at)) == T0 + dt.timedelta(seconds=2)


def test_a_changed_cron_schedule_is_read_again(app):
    with app.app_context():
        (uuid,) = make_applications(CONFIGS[2:])
        store = PostgresHeartbeatStore(db.engine)
        store.write([(uuid, signal("ok", T0))])
        update_application(uuid, {"cron": "0 * * * *"}, T0)
        db.session.commit()
        store.write([(uuid, signal("ok", T0 + dt.timedelta(seconds=10)))])
        store.close()
        db.session.expire_all()
        assert application_state(uuid)["next_deadline_at"] == T0 + dt.timedelta(hours=1)


def test_an_unknown_uuid_in_a_batch_fails_alone(app):
    with app.app_context():
        (uuid,) = make_applications(CONFIGS[:1])
        store = PostgresHeartbeatStore(db.engine)
        unknown = "00000000-0000-4000-8000-000000000000"
        results = store.write([(unknown, signal("ok", T0)), (uuid, signal("ok", T0))])
        store.close()
        assert isinstance(results[0], HeartbeatNotFound) and results[1]["kind"] == "ok"
        assert len(stored_heartbeats(uuid)) == 1


def test_a_batch_that_opens_an_incident_is_left_whole_to_the_orm_path(app, runtime):
    with app.app_context():
        channel = create_channel({"name": "hook", "kind": "webhook",
                                  "url": "http://127.0.0.1:9/hook"}, T0)
        uuid, other = make_applications([{**CONFIGS[0], "channels": [channel.id]}, CONFIGS[1]])
        store = PostgresHeartbeatStore(db.engine)
        items = [(other, signal("ok", T0)), (uuid, signal("fail", T0, exit_code=2))]
        assert store.write(items) is None
        assert db.session.scalar(select(func.count()).select_from(Heartbeat)) == 0
        # Rolled back: its row locks are gone, and the writer's own fallback stores the batch.
        results = runtime.writer.store_batch(items)
        store.close()
        assert [result["kind"] for result in results] == ["ok", "fail"]
        assert application_state(uuid)["status"] == "down"
        assert db.session.scalar(select(func.count()).select_from(Incident)) == 1
        assert db.session.scalar(select(func.count()).select_from(Alert)) == 1


def test_without_its_prepared_statements_the_store_sends_them_in_full(app):
    """As behind PgBouncer in transaction mode, where a prepared statement may be elsewhere."""
    with app.app_context():
        (uuid,) = make_applications(CONFIGS[:1])
        store = PostgresHeartbeatStore(db.engine)
        store.write([(uuid, signal("start", T0))])
        with store._connection.dbapi_connection.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")
        results = store.write([(uuid, signal("ok", T0 + dt.timedelta(seconds=3)))])
        store.write([(uuid, signal("log", T0 + dt.timedelta(seconds=4), metadata_json={"k": [1]}))])
        sent = recorded(store)
        pinged_at = T0 + dt.timedelta(seconds=5)
        plain = store.write([(uuid, signal("ok", pinged_at)), (uuid, signal("ok", pinged_at))])
        store.close()
        assert not store.use_prepared and results[0]["duration_ms"] == 3000
        # Plain pings of an application seen up: the one statement, its parameters in its order.
        assert len(sent) == 1 and sent[0] == WRITE_OK_PINGS.execute_in_full
        assert [result["kind"] for result in plain] == ["ok", "ok"]
        assert [row["kind"] for row in stored_heartbeats(uuid)] == \
            ["start", "ok", "log", "ok", "ok"]
        assert application_state(uuid)["last_heartbeat_at"] == pinged_at
        assert application_state(uuid)["status"] == "up"


def test_a_retried_batch_stores_each_heartbeat_once(app, runtime):
    """A retry follows a lost connection, which may have lost only the COMMIT's answer."""
    with app.app_context():
        (uuid,) = make_applications(CONFIGS[:1])
        items = [(uuid, signal("ok", T0 + dt.timedelta(seconds=n))) for n in range(3)]
        runtime.writer.store_batch(items)
        runtime.writer.store_batch(items, replay=True)
        assert len(stored_heartbeats(uuid)) == 3


kinds = st.sampled_from(["ok", "ok", "ok", "fail", "start", "log"])
steps = st.lists(st.tuples(st.integers(0, len(CONFIGS) - 1), kinds, st.sampled_from(
    [None, *RIDS]), st.integers(0, 400)), min_size=1, max_size=6)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.tuples(st.booleans(), steps), min_size=1, max_size=8))
# Two pings of one application in one batch: the writer keeps no check the ORM path kept.
@example(batches=[(False, [(0, "ok", None, 0)]), (False, [(0, "ok", None, 31), (0, "ok", None, 1)])])
def test_the_writer_and_the_orm_path_leave_the_same_rows(app, runtime, batches):
    """Twin applications: one fed through the writer, its twin through the ORM path alone.

    Some batches go to both twins through the ORM path, as from another process: the writer
    must then not write from what it saw before."""
    with app.app_context():
        fast, orm = make_applications(CONFIGS), make_applications(CONFIGS)
        at = T0
        for elsewhere, batch in batches:
            fast_items, orm_items = [], []
            for index, kind, rid, seconds in batch:
                at += dt.timedelta(seconds=seconds)
                fields = {"rid": rid, "exit_code": 1 if kind == "fail" else None,
                          "message": f"{kind} at {at:%H:%M:%S}"}
                fast_items.append((fast[index], signal(kind, at, **fields)))
                orm_items.append((orm[index], signal(kind, at, **fields)))
            if elsewhere:
                fast_results = write_heartbeats(fast_items)
            else:
                fast_results = runtime.writer.store_batch(fast_items)
            orm_results = write_heartbeats(orm_items)
            assert [r["duration_ms"] for r in fast_results] == \
                [r["duration_ms"] for r in orm_results]
        db.session.expire_all()
        for fast_uuid, orm_uuid in zip(fast, orm):
            fast_state, orm_state = application_state(fast_uuid), application_state(orm_uuid)
            fast_state.pop("next_check_at")
            orm_state.pop("next_check_at")
            assert fast_state == orm_state
            assert kept_or_moved_check(fast_uuid) and kept_or_moved_check(orm_uuid)
            assert stored_heartbeats(fast_uuid) == stored_heartbeats(orm_uuid)
