"""Heartbeats in daily partitions (PostgreSQL): what retention costs, and what ingest pays.

    .venv/bin/python bench/bench_partitions.py [--day-heartbeats 10000000] [--batches 3000]
                                               [--rounds 3] [--row-wise 200000]

Retention: a day of `--day-heartbeats` heartbeats (written straight in SQL with
generate_series, 40 days ago, over 1,000 applications), then one call of the housekeeping's
prune_old_heartbeats with the default 30 days' retention, timed: it drops the day's partition.
Target: under 1 s. For contrast, the row-wise prune (what SQLite does, and what PostgreSQL did
before partitions) deletes `--row-wise` old heartbeats from a plain table.

Ingest: two databases side by side, one migrated to the head (partitioned) and one left at
the plain table (migrated down to 0008); batches of 4 plain pings written through the ingest
writer's PostgreSQL path (ingest/pg_store.py) into each in turn, round after round, so a slow
patch of the shared machine falls on both. Per batch: wall time, the writer's CPU and the
PostgreSQL backend's CPU. Target: the partitioned table costs the same within noise (medians
within 10%).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import random
import subprocess
import threading
import time

from sqlalchemy import text

from bench_ingest import create_applications
from common import (BIN, ROOT, bench_database, connect, machine, median, per_batch_costs,
                    report, server_environment)

from heartbeat_partitions import partition_name  # noqa: E402  (common puts the project on the path)

APPLICATIONS = 1000
BATCH_SIZE = 4


def _literal(moment: dt.datetime) -> str:
    return f"'{moment.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(sep=' ')}'"


def make_app(database_url: str):
    from app import create_app
    # The I/O timeout it installs is process-wide: long enough for this script's own
    # statements (writing a day of heartbeats, dropping a database).
    return create_app({"DATABASE_URL": database_url, "MONITOR_ENABLED": False,
                       "LOG_LEVEL": "WARNING", "DB_IO_TIMEOUT_SECONDS": 1800})


def fill_day(database_url: str, day: dt.date, count: int) -> None:
    """`count` heartbeats spread over `day`, over the applications: the day's partition written
    as a table of its own, then attached (its indexes built by sorting, far faster than
    `count` random inserts into the UUID index), as housekeeping would have created it."""
    name = partition_name(day)
    low = dt.datetime.combine(day, dt.time())
    high = low + dt.timedelta(days=1)
    with contextlib.closing(connect(database_url)) as connection, connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0; SET maintenance_work_mem = '256MB'")
        cursor.execute("SELECT min(id), max(id) FROM applications")
        first, last = cursor.fetchone()
        cursor.execute(f"CREATE TABLE {name} (LIKE heartbeats INCLUDING DEFAULTS)")
        cursor.execute(
            f"INSERT INTO {name} (uuid, application_id, kind, message, source, remote_addr,"
            " user_agent, received_at) SELECT gen_random_uuid(), %s + n %% %s, 'ok', '', 'ping',"
            " '203.0.113.7', 'curl/8.5.0', %s + n * (interval '86400 s' / %s)"
            " FROM generate_series(0, %s - 1) AS n",
            (first, last - first + 1, low, count, count))
        cursor.execute(f"ALTER TABLE heartbeats ATTACH PARTITION {name} "
                       "FOR VALUES FROM (%s) TO (%s)", (low, high))
        cursor.execute("VACUUM ANALYZE heartbeats")


def applications_sql(count: int) -> str:
    return ("INSERT INTO applications (uuid, name, description, timezone, period_seconds,"
            " grace_seconds, failure_threshold, consecutive_failures, status, created_at,"
            f" updated_at) SELECT gen_random_uuid(), 'job-' || n, '', 'UTC', 60, 60, 1, 0, 'up',"
            f" now(), now() FROM generate_series(1, {count}) AS n")


def heartbeat_count(database_url: str, where: str = "true") -> int:
    with contextlib.closing(connect(database_url)) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM heartbeats WHERE {where}")
        return cursor.fetchone()[0]


def timed(database_url: str, task) -> tuple[float, int]:
    """One call of a housekeeping task in an app context: its wall time and what it returns."""
    from database import db
    app = make_app(database_url)
    with app.app_context():
        db.session.execute(text("SELECT 1"))  # connected before the clock starts
        db.session.commit()
        started = time.perf_counter()
        result = task()
        duration = time.perf_counter() - started
        db.engine.dispose()
    return duration, result


class Writes:
    """Heartbeat writes as ingest makes them (a heartbeat and its application's row, one
    transaction), back to back in a thread, each one's time kept: what a drop holds up."""

    def __init__(self, database_url: str) -> None:
        self.connection = connect(database_url)
        self.times: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with self.connection.cursor() as cursor:
            while not self.stop.is_set():
                started = time.perf_counter()
                cursor.execute(
                    "BEGIN; UPDATE applications SET updated_at = now() WHERE id = "
                    "(SELECT min(id) FROM applications); INSERT INTO heartbeats (uuid,"
                    " application_id, kind, message, source, received_at) SELECT"
                    " gen_random_uuid(), min(id), 'ok', '', 'ping', now() AT TIME ZONE 'UTC'"
                    " FROM applications; COMMIT")
                self.times.append(time.perf_counter() - started)

    def __enter__(self) -> "Writes":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.connection.close()


def retention(args) -> bool:
    from database import db
    from heartbeat_partitions import drop_retired_partitions, retire_heartbeat_partitions
    from models import Heartbeat
    from retention import delete_old_rows, prune_old_heartbeats
    now = dt.datetime.now(dt.timezone.utc)
    cutoff = now - dt.timedelta(days=30)
    old_day = (now - dt.timedelta(days=40)).date()
    with bench_database() as url:
        with contextlib.closing(connect(url)) as connection, connection.cursor() as cursor:
            cursor.execute(applications_sql(APPLICATIONS))
        started = time.perf_counter()
        fill_day(url, old_day, args.day_heartbeats)
        with contextlib.closing(connect(url)) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT pg_total_relation_size(%s)", (partition_name(old_day),))
            size = cursor.fetchone()[0]
            cursor.execute("CHECKPOINT")
        print(f"  {args.day_heartbeats:,} heartbeats ({size / 1e9:.2f} GB with indexes) written "
              f"into {old_day} in {time.perf_counter() - started:.0f} s", flush=True)
        # The prune's two steps, timed apart, with heartbeats being written meanwhile; a step
        # that cannot have its locks within LOCK_TIMEOUT gives up until the next housekeeping
        # (here: at once), so the detach is timed as the attempts it took.
        app = make_app(url)
        with app.app_context(), Writes(url) as writes:
            db.session.execute(text("SELECT 1"))
            db.session.commit()
            time.sleep(1)
            alone = sorted(writes.times)
            before, attempts, started = len(writes.times), 0, time.perf_counter()
            while not retire_heartbeat_partitions(cutoff) and attempts < 50:
                attempts += 1
            retire = time.perf_counter() - started
            during_retire = writes.times[before:]
            before, started = len(writes.times), time.perf_counter()
            drop_retired_partitions()
            drop = time.perf_counter() - started
            during_drop = writes.times[before:]
            started = time.perf_counter()
            prune_old_heartbeats(now)
            rest = time.perf_counter() - started
            db.engine.dispose()
        left = heartbeat_count(url, "received_at < %s" % _literal(cutoff))
    print(f"  writes meanwhile: alone median {1000 * median(alone):.1f} ms, longest "
          f"{1000 * alone[-1]:.1f} ms; longest while detaching "
          f"({attempts + 1} attempts) {1000 * max(during_retire, default=0):.1f} ms "
          f"({len(during_retire)} writes), while dropping "
          f"{1000 * max(during_drop, default=0):.1f} ms ({len(during_drop)} writes)", flush=True)
    passed = report("heartbeat retention with partitions",
                    f"a day of {args.day_heartbeats:,} heartbeats detached in "
                    f"{retire * 1000:.0f} ms, its files dropped in {drop * 1000:.0f} ms holding "
                    f"no lock on heartbeats or applications (the next prune: "
                    f"{rest * 1000:.0f} ms; {left} old heartbeats left)",
                    retire < 1.0 and left == 0)
    if args.row_wise:
        with bench_database() as url:
            downgrade_to_plain(url)
            with contextlib.closing(connect(url)) as connection, connection.cursor() as cursor:
                cursor.execute(applications_sql(APPLICATIONS))
                cursor.execute(
                    "INSERT INTO heartbeats (uuid, application_id, kind, message, source,"
                    " received_at) SELECT gen_random_uuid(), 1 + n %% %s, 'ok', '', 'ping',"
                    " %s + n * interval '1 ms' FROM generate_series(1, %s) AS n",
                    (APPLICATIONS, dt.datetime.combine(old_day, dt.time()), args.row_wise))
                cursor.execute("VACUUM ANALYZE heartbeats")
            total, deleted = 0.0, 0
            while True:  # housekeeping passes, back to back
                duration, count = timed(url, lambda: delete_old_rows(
                    Heartbeat.__table__, now - dt.timedelta(days=30)))
                if count == 0:
                    break
                total, deleted = total + duration, deleted + count
        each = total / max(deleted, 1)
        print(f"  for contrast, row by row on a plain table: {deleted:,} heartbeats in "
              f"{total:.1f} s, {1e6 * each:.1f} us each: a day of {args.day_heartbeats:,} "
              f"would take {each * args.day_heartbeats:.0f} s", flush=True)
    return passed


def downgrade_to_plain(url: str) -> None:
    subprocess.run([str(BIN / "flask"), "--app", "app", "db", "downgrade",
                    "0008_incident_response"], cwd=ROOT, env=server_environment(url),
                   check=True, capture_output=True)


def ingest(args) -> bool:
    from database import db
    from ingest.pg_store import PostgresHeartbeatStore
    from ingest.signals import received_signal
    with bench_database() as partitioned_url, bench_database() as plain_url:
        downgrade_to_plain(plain_url)
        stores, uuids, apps = {}, {}, []
        for name, url in (("partitioned", partitioned_url), ("plain", plain_url)):
            uuids[name] = create_applications(url, 200)
            app = make_app(url)
            apps.append(app)
            with app.app_context():
                stores[name] = PostgresHeartbeatStore(db.engine)

        def batch(name: str) -> list:
            at = dt.datetime.now(dt.timezone.utc)
            return [(uuid, received_signal("ok", received_at=at, remote_addr="127.0.0.1",
                                           user_agent="bench", exit_code=None))
                    for uuid in random.sample(uuids[name], BATCH_SIZE)]

        def measure(name: str) -> tuple[float, float, float]:
            store = stores[name]
            batches = [batch(name) for _ in range(args.batches)]
            backend = store._connection.dbapi_connection.get_backend_pid()
            return per_batch_costs(store.write, batches, backend)

        for name in stores:  # warm up; the one-statement path learns the schedules
            for _ in range(300):
                stores[name].write(batch(name))
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in stores}
        for round_number in range(args.rounds):
            order = list(stores) if round_number % 2 == 0 else list(reversed(stores))
            for name in order:
                results[name].append(measure(name))
        in_default = heartbeat_count(partitioned_url, "tableoid = 'heartbeats_default'::regclass")
        for store in stores.values():
            store.close()
        for app in apps:
            with app.app_context():
                db.engine.dispose()
    medians = {}
    for name, runs in results.items():
        medians[name] = [median([run[n] for run in runs]) for n in range(3)]
        wall, cpu, server = medians[name]
        print(f"  {name:12s} per batch of {BATCH_SIZE}: wall {wall:4.0f} us, writer CPU "
              f"{cpu:4.0f} us, PostgreSQL backend CPU {server:4.0f} us "
              f"(rounds: {', '.join(f'{run[0]:.0f}' for run in runs)} us)", flush=True)
    ratio = medians["partitioned"][0] / medians["plain"][0]
    return report("ingest into partitions",
                  f"wall per batch partitioned/plain {ratio:.2f}, backend CPU "
                  f"{medians['partitioned'][2] / medians['plain'][2]:.2f} "
                  f"({in_default} heartbeats in the default partition)",
                  ratio < 1.10 and in_default == 0)


def served(args) -> bool:
    """The service itself on each table, side by side under wrk (bench_ingest.py's load)."""
    import io

    import psycopg2.extensions

    from bench_ingest import alternate, application_uuid_file, describe, service_environment
    from common import gunicorn, scratch_dir
    with bench_database() as partitioned_url, bench_database() as plain_url, \
            scratch_dir() as scratch:
        downgrade_to_plain(plain_url)
        uuids = application_uuid_file(partitioned_url, scratch)
        # create_app (above) installs a wait callback process-wide, with which COPY cannot run
        # and a DROP DATABASE may be cut at its timeout: this script's own connections go
        # without it.
        psycopg2.extensions.set_wait_callback(None)
        rows = io.StringIO()  # the same applications in both, so one UUID file serves both
        with contextlib.closing(connect(partitioned_url)) as source, source.cursor() as cursor:
            cursor.copy_expert("COPY applications TO STDOUT", rows)
        rows.seek(0)
        with contextlib.closing(connect(plain_url)) as target, target.cursor() as cursor:
            cursor.copy_expert("COPY applications FROM STDIN", rows)
        log, keep_alive = scratch / "gunicorn.log", ["--keep-alive", "0"]
        with gunicorn("app:create_app()", service_environment(partitioned_url, scratch,
                                                              "partitioned"),
                      2, 8, log, extra_args=keep_alive) as (partitioned_port, _), \
                gunicorn("app:create_app()", service_environment(plain_url, scratch, "plain"),
                         2, 8, log, extra_args=keep_alive) as (plain_port, _):
            results = alternate({"partitioned": (partitioned_port, uuids),
                                 "plain": (plain_port, uuids)}, args.rounds, args.seconds)
        in_default = heartbeat_count(partitioned_url,
                                     "tableoid = 'heartbeats_default'::regclass")
    for name, runs in results.items():
        print(f"  served, {name:12s} {describe(runs)}", flush=True)
    ratio = (median([run["rps"] for run in results["partitioned"]])
             / median([run["rps"] for run in results["plain"]]))
    return report("served ingest into partitions",
                  f"ping req/s partitioned/plain {ratio:.2f} ({in_default} heartbeats in the "
                  "default partition)", ratio > 0.9 and in_default == 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--day-heartbeats", type=int, default=10_000_000)
    parser.add_argument("--row-wise", type=int, default=200_000)
    parser.add_argument("--batches", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8, help="per served round")
    parser.add_argument("--served", action="store_true",
                        help="also the service on each table under wrk, side by side")
    parser.add_argument("--skip", choices=["retention", "ingest"])
    args = parser.parse_args()
    print(f"partitions: {machine()}", flush=True)
    passed = True
    if args.skip != "ingest":
        passed &= ingest(args)
        if args.served:
            passed &= served(args)
    if args.skip != "retention":
        passed &= retention(args)
    raise SystemExit(0 if passed else 1)


if __name__ == "__main__":
    main()
