"""Target (SPEC §10, issue item 5): console pages stay fast as data grows.

One application with 1,000,000 heartbeats (runs with durations among them), 200 incidents
over the last week and a status that changed every minute of that week (10,080 status changes:
the timeline's worst case), among 10,000 applications. Timed in-process through Flask's test client,
signed in (server time: routing, queries, rendering; no network), each page REPEAT times:

- the application's page (status, snippets, run-duration chart, 24 h and 7 day timelines, the
  heartbeat log's first page, incidents) — against the same page of an application with the
  same incidents, 10 heartbeats and only its incidents' status changes (late, down, up: 600),
  in the same database, interleaved;
- the applications list (first page, a status filter, a name search) over 10,000 — against the
  same list over the first 100 applications, in a database of its own, same run.

Target: every median < 150 ms. The query plans of the run-duration query (an index
range scan reading at most RECENT_HEARTBEATS rows, never the application's whole history)
and of the 7-day timeline's status changes (a range scan of their index) are printed.
"""
from __future__ import annotations

import datetime as dt
import statistics
import sys
import time
import uuid

from sqlalchemy import insert, select, text

from common import bench_database, machine, report, scratch_dir

APPLICATIONS = 10_000
BASELINE_APPLICATIONS = 100
HEARTBEATS = 1_000_000
SMALL_HEARTBEATS = 10
INCIDENTS = 200
FLAPPING_CHANGES = 7 * 24 * 60
REPEAT = 30
TARGET_MS = 150.0
NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def application_rows(count: int) -> list[dict]:
    statuses = ("up", "up", "up", "late", "down", "paused", "new")
    return [{"uuid": str(uuid.uuid4()), "name": f"job-{n:05d}", "description": "",
             "period_seconds": 3600, "timezone": "UTC", "grace_seconds": 600,
             "failure_threshold": 1, "consecutive_failures": 0,
             "status": statuses[n % len(statuses)],
             "last_heartbeat_at": NOW - dt.timedelta(minutes=10),
             "next_deadline_at": NOW + dt.timedelta(minutes=50),
             "next_check_at": NOW + dt.timedelta(minutes=50),
             "created_at": NOW - dt.timedelta(days=30),
             "updated_at": NOW} for n in range(count)]


def fill(count: int, heartbeats: int) -> tuple[str, str]:
    """`count` applications (a tenth tagged); `heartbeats` for the first one, 30 s apart, every
    second one the end of a run with its duration; SMALL_HEARTBEATS for the second; INCIDENTS
    over the last week for both. Returns the two UUIDs."""
    from database import db
    from models import Application, ApplicationTag
    db.session.execute(insert(Application), application_rows(count))
    ids = list(db.session.execute(select(Application.id).order_by(Application.id)).scalars())
    db.session.execute(insert(ApplicationTag), [
        {"application_id": application_id, "tag": f"team-{n % 10}"}
        for n, application_id in enumerate(ids) if n % 10 == 0])
    big, small = ids[0], ids[1]
    for first in range(1, heartbeats + 1, 20_000):  # each within the I/O timeout
        db.session.execute(text(
            "INSERT INTO heartbeats (uuid, application_id, kind, message, duration_ms, source,"
            " received_at) SELECT gen_random_uuid()::text, :app,"
            " CASE WHEN g % 2 = 0 THEN 'start' ELSE 'ok' END, 'backup done',"
            " CASE WHEN g % 2 = 1 THEN 1000 + (g * 37) % 60000 END, 'ping',"
            " :newest - (:count - g) * interval '30 seconds'"
            " FROM generate_series(:first, :last) AS g"),
            {"app": big, "count": heartbeats, "first": first,
             "last": min(heartbeats, first + 19_999), "newest": NOW.replace(tzinfo=None)})
        db.session.commit()
    db.session.execute(text(
        "INSERT INTO heartbeats (uuid, application_id, kind, message, source, received_at)"
        " SELECT gen_random_uuid()::text, :app, 'ok', '', 'ping',"
        " :newest - g * interval '1 minute' FROM generate_series(1, :count) AS g"),
        {"app": small, "count": SMALL_HEARTBEATS, "newest": NOW.replace(tzinfo=None)})
    for application_id in (big, small):  # the same incidents: the pages differ in heartbeats
        db.session.execute(text(
            "INSERT INTO incidents (application_id, reason, started_at, resolved_at, resolution,"
            " alerted_at, in_maintenance, escalation_step)"
            " SELECT :app, 'missed', :now - g * interval '50 minutes',"
            " :now - g * interval '50 minutes' + interval '10 minutes', 'recovered',"
            " :now - g * interval '50 minutes', false, 0 FROM generate_series(1, :count) AS g"),
            {"app": application_id, "count": INCIDENTS, "now": NOW.replace(tzinfo=None)})
    db.session.execute(text(  # the small one: late 5 minutes before each incident, up after it
        "INSERT INTO status_changes (application_id, status, changed_at)"
        " SELECT :app, s.status, :now - g * interval '50 minutes' + s.offset_minutes"
        " * interval '1 minute' FROM generate_series(1, :count) AS g, (VALUES ('late', -5),"
        " ('down', 0), ('up', 10)) AS s(status, offset_minutes)"),
        {"app": small, "count": INCIDENTS, "now": NOW.replace(tzinfo=None)})
    db.session.execute(text(  # the big one: a change every minute for a week
        "INSERT INTO status_changes (application_id, status, changed_at)"
        " SELECT :app, (ARRAY['up', 'late', 'down'])[g % 3 + 1], :now - g * interval '1 minute'"
        " FROM generate_series(1, :count) AS g"),
        {"app": big, "count": FLAPPING_CHANGES, "now": NOW.replace(tzinfo=None)})
    db.session.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE applications, application_tags, heartbeats,"
                                " incidents, status_changes"))
    uuids = dict(db.session.execute(select(Application.id, Application.uuid).where(
        Application.id.in_([big, small]))).all())
    return uuids[big], uuids[small]


def timed(client, path: str) -> list[float]:
    durations = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        response = client.get(path)
        durations.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return durations


def signed_in_client(app):
    from auth import create_api_key
    from database import db
    with app.app_context():
        api_key, _ = create_api_key("bench", True, NOW)
        key_id = api_key.id
        db.session.remove()
    client = app.test_client()
    with client.session_transaction() as session:
        session["api_key_id"] = key_id
    return client


def build(database_url: str, spool: str, count: int, heartbeats: int):
    from app import create_app
    from database import db
    from utils.clock import ManualClock
    app = create_app({"DATABASE_URL": database_url, "MONITOR_ENABLED": False,
                      "LOG_LEVEL": "WARNING", "LOG_FORMAT": "text", "SPOOL_DIR": spool,
                      "CLOCK": ManualClock(NOW), "DB_IO_TIMEOUT_SECONDS": 30})
    with app.app_context():
        started = time.perf_counter()
        uuids = fill(count, heartbeats)
        print(f"  filled {count:,} applications, {heartbeats:,} heartbeats in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        db.session.remove()
    return app, uuids


def run_plan(app, uuid_text: str) -> None:
    from database import db
    with app.app_context():
        plan = db.session.execute(text(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT received_at, kind, duration_ms FROM heartbeats"
            " WHERE application_id = (SELECT id FROM applications WHERE uuid = :uuid)"
            " ORDER BY received_at DESC, id DESC LIMIT 200"), {"uuid": uuid_text}).scalars()
        print("  run-duration query plan:\n    " + "\n    ".join(plan), flush=True)
        plan = db.session.execute(text(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT changed_at, status FROM status_changes"
            " WHERE application_id = (SELECT id FROM applications WHERE uuid = :uuid)"
            " AND changed_at >= :since AND changed_at <= :now"
            " ORDER BY changed_at DESC, id DESC LIMIT 12001"),
            {"uuid": uuid_text, "since": (NOW - dt.timedelta(days=7)).replace(tzinfo=None),
             "now": NOW.replace(tzinfo=None)}).scalars()
        print("  7-day status changes query plan:\n    " + "\n    ".join(plan), flush=True)
        db.session.remove()


def summary(durations: list[float]) -> str:
    ordered = sorted(durations)
    return (f"median {statistics.median(ordered):.1f} ms, "
            f"p95 {ordered[int(len(ordered) * 0.95) - 1]:.1f} ms")


def main() -> int:
    print(f"console pages; {machine()}", flush=True)
    passed = True
    with scratch_dir() as spool, bench_database() as small_url, bench_database() as big_url:
        small_app, _ = build(small_url, str(spool / "small"), BASELINE_APPLICATIONS,
                             SMALL_HEARTBEATS)
        big_app, (big_uuid, small_uuid) = build(big_url, str(spool / "big"), APPLICATIONS,
                                                HEARTBEATS)
        run_plan(big_app, big_uuid)
        small_client, big_client = signed_in_client(small_app), signed_in_client(big_app)
        pages = [
            ("application page, 1,000,000 heartbeats, 10,080 status changes", big_client, f"/applications/{big_uuid}",
             big_client, f"/applications/{small_uuid}", f"{SMALL_HEARTBEATS} heartbeats, 600 changes"),
            ("applications list over 10,000", big_client, "/applications",
             small_client, "/applications", f"over {BASELINE_APPLICATIONS}"),
            ("list filtered by status over 10,000", big_client, "/applications?status=down",
             small_client, "/applications?status=down", f"over {BASELINE_APPLICATIONS}"),
            ("list searched by name over 10,000", big_client, "/applications?q=job-0999",
             small_client, "/applications?q=job-0099", f"over {BASELINE_APPLICATIONS}"),
            ("overview (/) over 10,000", big_client, "/", small_client, "/",
             f"over {BASELINE_APPLICATIONS}"),
        ]
        for client, path in ((big_client, f"/applications/{big_uuid}"),
                             (big_client, "/applications"), (small_client, "/applications")):
            timed(client, path)  # warm: templates compiled, connections open
        for name, client, path, base_client, base_path, base_label in pages:
            measured, baseline = [], []
            for _ in range(3):  # interleaved, so a burst of load hits both
                baseline += timed(base_client, base_path)
                measured += timed(client, path)
            ratio = statistics.median(measured) / statistics.median(baseline)
            passed &= report(f"console: {name} < {TARGET_MS:.0f} ms",
                             f"{summary(measured)} (baseline {base_label}: {summary(baseline)};"
                             f" ratio {ratio:.2f})",
                             statistics.median(measured) < TARGET_MS)
        for application in (small_app, big_app):
            application.extensions["hbmon"].shutdown()
            with application.app_context():
                from database import db
                db.engine.dispose()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
