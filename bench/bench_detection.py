"""Target 2: a monitor tick over 100,000 applications, none due and 1,000 due.

The tick is the full `Monitor.tick()` of the service (spool replay check, outage-gap check,
judging, the incidents' reminders, escalation and held alerts, alive mark, error-rate check),
and the ticks that also run one of its housekeeping tasks (once a minute each: pruning request
counts, resolved errors, heartbeats past their retention, moving on maintenance windows'
occurrences), timed apart: over 400,000 heartbeats with none old, and once while it prunes
100,000. The idle tick is timed before and after 1,000 active maintenance windows (one-off
and recurring) and 10,000 dependencies are defined, side by side; the busy tick and the
housekeeping ticks run with them. Baseline: the same tick over 1,000 applications, measured
first in the same database; the ratio shows that cost follows what is due, not what exists.
The query plans of the due-applications and due-incidents queries are printed.
"""
from __future__ import annotations

import datetime as dt
import statistics
import sys
import time
import uuid

from sqlalchemy import delete, event, insert, select, text, update

from common import bench_database, machine, report, scratch_dir

TOTAL = 100_000
BASELINE_TOTAL = 1_000
DUE = 1_000
TICKS = 15
WINDOWS = 1_000  # active now: 700 one-off, 300 recurring
DEPENDENCIES = 10_000
RESOLVED_INCIDENTS = 100_000  # history: the due-incidents query must not read it
OLD_HEARTBEATS = 100_000  # past HEARTBEAT_RETENTION_DAYS (30): one housekeeping prunes them
RECENT_HEARTBEATS = 400_000
NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def application_rows(first: int, count: int) -> list[dict]:
    deadline = NOW + dt.timedelta(minutes=50)
    return [{"uuid": str(uuid.uuid4()), "name": f"job-{first + i}", "description": "",
             "period_seconds": 3600, "timezone": "UTC", "grace_seconds": 600,
             "failure_threshold": 1, "consecutive_failures": 0, "status": "up",
             "last_heartbeat_at": NOW - dt.timedelta(minutes=10), "next_deadline_at": deadline,
             "next_check_at": deadline, "created_at": NOW, "updated_at": NOW}
            for i in range(count)]


def vacuum_analyze() -> None:
    """Statistics for the planner, and nothing left for autovacuum to do on the rows just
    inserted (it would otherwise vacuum them during the timed ticks, on the same 2 cores)."""
    from database import db
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE applications, heartbeats, incidents, "
                                "maintenance_windows, maintenance_window_applications"))


def add_heartbeats(count: int, newest: dt.datetime) -> None:
    """`count` heartbeats a second apart up to `newest`, spread over every application."""
    from database import db
    for first in range(1, count + 1, 20_000):  # each statement well within the I/O timeout
        db.session.execute(text(
            "INSERT INTO heartbeats (uuid, application_id, kind, message, source, received_at)"
            " SELECT gen_random_uuid()::text, app.id + g % :total, 'ok', '', 'ping',"
            " :newest - (:count - g) * interval '1 second'"
            " FROM generate_series(:first, :last) AS g,"
            " (SELECT min(id) AS id FROM applications) AS app"
        ), {"total": TOTAL, "count": count, "first": first, "last": min(count, first + 19_999),
            "newest": newest.replace(tzinfo=None)})
        db.session.commit()


def add_windows_and_dependencies(due_every: int) -> None:
    """WINDOWS windows in force at NOW, none covering an application that will be due,
    DEPENDENCIES applications depending on one of the first 1,000 (due ones among them), and
    RESOLVED_INCIDENTS incidents of the past."""
    from database import db
    from maintenance import recurring_occurrence
    from models import MaintenanceWindow, maintenance_window_applications
    recurring = recurring_occurrence("0 * * * *", "Europe/Berlin", 7200, NOW)
    rows = []
    for n in range(WINDOWS):
        one_off = n < 700
        rows.append({"name": f"window-{n}", "kind": "one_off" if one_off else "recurring",
                     "starts_at": NOW - dt.timedelta(hours=1) if one_off else None,
                     "ends_at": NOW + dt.timedelta(hours=1) if one_off else None,
                     "cron": None if one_off else "0 * * * *", "timezone": "Europe/Berlin",
                     "duration_seconds": None if one_off else 7200, "covers_all": False,
                     "tags": [] if one_off else [f"maint-{n}"],
                     "occurrence_starts_at": NOW - dt.timedelta(hours=1) if one_off
                     else recurring[0],
                     "occurrence_ends_at": NOW + dt.timedelta(hours=1) if one_off
                     else recurring[1],
                     "created_at": NOW, "updated_at": NOW})
    db.session.execute(insert(MaintenanceWindow), rows)
    window_ids = list(db.session.execute(select(MaintenanceWindow.id).where(
        MaintenanceWindow.kind == "one_off").order_by(MaintenanceWindow.id)).scalars())
    first_id = db.session.scalar(select(db.func.min(text("id"))).select_from(text("applications")))
    db.session.execute(insert(maintenance_window_applications), [
        {"window_id": window_id, "application_id": first_id + 1 + n * due_every}
        for n, window_id in enumerate(window_ids)])  # never an id divisible by due_every
    db.session.execute(text(
        "UPDATE applications SET depends_on_id = :first + (id % 1000)"
        " WHERE id >= :first + 1000 AND id < :first + 1000 + :count"),
        {"first": first_id, "count": DEPENDENCIES})
    db.session.execute(text(
        "INSERT INTO incidents (application_id, reason, started_at, resolved_at, resolution,"
        " alerted_at, in_maintenance, escalation_step)"
        " SELECT :first + g % :total, 'missed', :now - g * interval '1 minute',"
        " :now - g * interval '1 minute' + interval '10 minutes', 'recovered',"
        " :now - g * interval '1 minute', false, 0 FROM generate_series(1, :count) AS g"),
        {"first": first_id, "total": TOTAL, "count": RESOLVED_INCIDENTS,
         "now": NOW.replace(tzinfo=None)})
    db.session.commit()


def statements_per_tick(monitor, engine) -> list[str]:
    """The SQL statements one tick sends (their first words): a figure the load cannot blur."""
    sent: list[str] = []

    def note(connection, cursor, statement, *args) -> None:
        sent.append(" ".join(statement.split()[:4]))
    event.listen(engine, "before_cursor_execute", note)
    try:
        monitor.tick()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return sent


def time_ticks(monitor, count: int, housekeeping: int | None = None) -> list[float]:
    """Durations of `count` ticks; with `housekeeping`, each runs that housekeeping task."""
    durations = []
    for _ in range(count):
        if housekeeping is not None:
            monitor.housekeeping_due_at[housekeeping] = None
        started = time.perf_counter()
        monitor.tick()
        durations.append(time.perf_counter() - started)
    return durations


def main() -> bool:
    from app import create_app
    from database import db
    from models import Alert, Application, Channel, Heartbeat, Incident, application_channels
    from utils.clock import ManualClock

    passed = True
    with bench_database() as database_url, scratch_dir() as scratch:
        # The bulk set-up statements may outlast the service's 3 s I/O timeout on a busy machine.
        app = create_app({"DATABASE_URL": database_url, "MONITOR_ENABLED": False,
                          "LOG_LEVEL": "WARNING", "SPOOL_DIR": str(scratch / "spool"),
                          "CLOCK": ManualClock(NOW), "DB_IO_TIMEOUT_SECONDS": 120})
        monitor = app.extensions["hbmon"].monitor
        print(f"detection: {machine()}; full Monitor.tick() on PostgreSQL, median of {TICKS}",
              flush=True)
        with app.app_context():
            db.session.execute(insert(Application), application_rows(0, BASELINE_TOTAL))
            db.session.commit()
            vacuum_analyze()
        time_ticks(monitor, 3)
        small = statistics.median(time_ticks(monitor, TICKS))

        with app.app_context():
            for first in range(BASELINE_TOTAL, TOTAL, 10_000):
                db.session.execute(insert(Application),
                                   application_rows(first, min(10_000, TOTAL - first)))
                db.session.commit()
            add_heartbeats(OLD_HEARTBEATS, NOW - dt.timedelta(days=31))
            add_heartbeats(RECENT_HEARTBEATS, NOW)
            vacuum_analyze()
        heartbeat_task = [task.__name__ for task in monitor.housekeeping].index(
            "prune_old_heartbeats")
        (pruning,) = time_ticks(monitor, 1, housekeeping=heartbeat_task)
        with app.app_context():
            kept = db.session.scalar(select(db.func.count()).select_from(Heartbeat))
            vacuum_analyze()
        print(f"  tick whose housekeeping pruned {OLD_HEARTBEATS:,} heartbeats past their "
              f"retention (of {OLD_HEARTBEATS + RECENT_HEARTBEATS:,}): {pruning * 1000:.0f} ms, "
              f"{kept:,} kept")
        passed &= report("heartbeat retention", f"{pruning * 1000:.0f} ms to prune "
                         f"{OLD_HEARTBEATS:,} old heartbeats in one housekeeping tick, "
                         f"{pruning / OLD_HEARTBEATS * 1e6:.1f} us each (informational)",
                         kept == RECENT_HEARTBEATS)
        time_ticks(monitor, 3)
        idle_plain = statistics.median(time_ticks(monitor, TICKS))
        with app.app_context():
            add_windows_and_dependencies(TOTAL // DUE)
            vacuum_analyze()
        time_ticks(monitor, 3)
        idle = statistics.median(time_ticks(monitor, TICKS))
        with app.app_context():
            engine = db.engine
        statements = statements_per_tick(monitor, engine)
        print(f"  statements per idle tick: {len(statements)}")
        for statement in statements:
            print(f"    {statement}")
        housekeeping = {task.__name__: statistics.median(time_ticks(monitor, TICKS, index))
                        for index, task in enumerate(monitor.housekeeping)}
        worst = max(housekeeping.values())
        print(f"  tick, none due, {BASELINE_TOTAL:,} applications (baseline): {small * 1000:.2f} ms")
        print(f"  tick, none due, {TOTAL:,} applications: {idle_plain * 1000:.2f} ms")
        print(f"  the same with {WINDOWS:,} active maintenance windows and {DEPENDENCIES:,} "
              f"dependencies: {idle * 1000:.2f} ms")
        for name, duration in housekeeping.items():
            print(f"  the same with housekeeping task {name} (once a minute; "
                  f"{RECENT_HEARTBEATS:,} heartbeats, none old): {duration * 1000:.2f} ms")
        passed &= report("detection idle tick",
                         f"{idle * 1000:.2f} ms over {TOTAL:,} applications with {WINDOWS:,} "
                         f"active windows and {DEPENDENCIES:,} dependencies, ratio to the same "
                         f"without them {idle / idle_plain:.2f}, to {BASELINE_TOTAL:,} "
                         f"applications {idle / small:.2f}; "
                         f"{worst * 1000:.2f} ms in the slowest housekeeping tick "
                         f"(target < 10 ms)", max(idle, worst) < 0.010)

        with app.app_context():
            channel = Channel(name="sink", kind="webhook", url="http://127.0.0.1:9/hook",
                              created_at=NOW, updated_at=NOW)
            db.session.add(channel)
            db.session.flush()
            due_ids = list(db.session.execute(  # spread over the whole id range
                select(Application.id).where(Application.id % (TOTAL // DUE) == 0)
                .order_by(Application.id).limit(DUE)).scalars())
            db.session.execute(insert(application_channels),
                               [{"application_id": i, "channel_id": channel.id} for i in due_ids])
            db.session.commit()

            def make_due() -> None:
                db.session.execute(delete(Alert))
                db.session.execute(delete(Incident).where(Incident.application_id.in_(due_ids)))
                overdue = NOW - dt.timedelta(minutes=11)
                db.session.execute(update(Application).where(Application.id.in_(due_ids))
                                   .values(status="up", next_deadline_at=overdue,
                                           next_check_at=overdue))
                db.session.commit()

            busy = []
            for _ in range(3):
                make_due()
                started = time.perf_counter()
                changed = monitor.tick()
                busy.append(time.perf_counter() - started)
                incidents = db.session.scalar(select(db.func.count()).select_from(Incident)
                                              .where(Incident.resolved_at.is_(None)))
                alerts = db.session.scalar(select(db.func.count()).select_from(Alert))
                if (changed, incidents, alerts) != (DUE, DUE, DUE):
                    print(f"  wrong outcome: {changed} changed, {incidents} incidents, "
                          f"{alerts} alerts")
                    passed = False
            due_tick = statistics.median(busy)
            print(f"  tick, {DUE:,} due of {TOTAL:,} (each: status down, incident, alert): "
                  f"{due_tick * 1000:.0f} ms (runs {', '.join(f'{b * 1000:.0f}' for b in busy)})")
            passed &= report("detection busy tick",
                             f"{due_tick * 1000:.0f} ms for {DUE:,} due with their incidents and "
                             f"alerts, {due_tick / DUE * 1e6:.0f} us per due application, ratio to "
                             f"idle tick {due_tick / idle:.0f} (target < 1 s)", due_tick < 1.0)

            query = (select(Application).where(Application.next_check_at <= NOW)
                     .order_by(Application.next_check_at).limit(monitor.BATCH_SIZE)
                     .with_for_update(skip_locked=True))
            sql = str(query.compile(dialect=db.engine.dialect,
                                    compile_kwargs={"literal_binds": True}))
            plan = [row[0] for row in db.session.execute(text("EXPLAIN ANALYZE " + sql))]
            db.session.rollback()
            print("  plan of the due-applications query:")
            for line in plan:
                print(f"    {line}")
            uses_index = any("ix_applications_next_check_at" in line for line in plan)
            passed &= report("detection plan", "uses ix_applications_next_check_at"
                             if uses_index else "does not use the deadline index", uses_index)
            db.session.commit()
            vacuum_analyze()
            incidents = (select(Incident).where(Incident.next_check_at <= NOW)
                         .order_by(Incident.next_check_at, Incident.id).limit(200)
                         .with_for_update(skip_locked=True))
            sql = str(incidents.compile(dialect=db.engine.dialect,
                                        compile_kwargs={"literal_binds": True}))
            plan = [row[0] for row in db.session.execute(text("EXPLAIN ANALYZE " + sql))]
            db.session.rollback()
            print(f"  plan of the due-incidents query ({DUE:,} incidents open, "
                  f"{RESOLVED_INCIDENTS:,} resolved):")
            for line in plan:
                print(f"    {line}")
            uses_index = any("ix_incidents_next_check_at" in line for line in plan)
            passed &= report("incident timers plan", "uses ix_incidents_next_check_at"
                             if uses_index else "does not use the incidents' check index",
                             uses_index)
            db.session.remove()
            db.engine.dispose()
    return passed


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
