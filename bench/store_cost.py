"""What one batch of plain pings costs the ingest writer: the one-statement path against the
two round trips, side by side on the same connection settings and database.

    .venv/bin/python bench/store_cost.py [--batches 3000] [--size 4] [--rounds 2]
                                         [--count-trigger | --status-trigger]

Writes `--batches` batches of `--size` plain pings to 200 applications through
ingest/pg_store.PostgresHeartbeatStore, alternating the two paths round after round, and
prints per batch: wall time, CPU of this process (the writer's share) and CPU of the
PostgreSQL backend serving the connection (from /proc). No HTTP, no threads: the cost of the
write alone. With --count-trigger, each path is measured with and without the trigger that
counts pings into applications.n_pings (migration 0006), alternating, round after round; with
--status-trigger, with and without the trigger that records status changes (migration 0013:
an `up` written over `up` is checked by its WHEN clause and records nothing).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import random

from bench_ingest import create_applications
from common import bench_database, connect, machine, median, per_batch_costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=3000)
    parser.add_argument("--size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--count-trigger", action="store_true",
                        help="compare each path with and without the n_pings trigger")
    parser.add_argument("--status-trigger", action="store_true",
                        help="compare each path with and without the status changes trigger")
    args = parser.parse_args()
    print(f"store cost: {machine()}; {args.batches} batches of {args.size} plain pings per "
          f"path and round, {args.rounds} rounds", flush=True)
    with bench_database() as database_url:
        uuids = create_applications(database_url, 200)
        from app import create_app
        from database import db
        from ingest.pg_store import PostgresHeartbeatStore
        from ingest.signals import received_signal
        app = create_app({"DATABASE_URL": database_url, "MONITOR_ENABLED": False,
                          "LOG_LEVEL": "WARNING"})

        def batch() -> list:
            now = dt.datetime.now(dt.timezone.utc)
            return [(uuid, received_signal("ok", received_at=now, remote_addr="127.0.0.1",
                                           user_agent="bench", exit_code=None))
                    for uuid in random.sample(uuids, args.size)]

        table, trigger = (("applications", "applications_status_changed")
                          if args.status_trigger else ("heartbeats", "heartbeats_count_pings"))

        def count_pings(enabled: bool) -> None:
            with contextlib.closing(connect(database_url)) as admin, admin.cursor() as cursor:
                cursor.execute(f"ALTER TABLE {table} " + ("ENABLE" if enabled else "DISABLE")
                               + f" TRIGGER {trigger}")

        def measure(one_statement: bool, counting: bool = True) -> tuple[float, float, float]:
            count_pings(counting)
            with app.app_context():
                store = PostgresHeartbeatStore(db.engine)
            if not one_statement:
                store._write_ok_pings = lambda items: None  # always the two round trips
            for _ in range(300):  # warm up; the one-statement path learns the schedules
                store.write(batch())
            backend = store._connection.dbapi_connection.get_backend_pid()
            batches = [batch() for _ in range(args.batches)]
            costs = per_batch_costs(store.write, batches, backend)
            store.close()
            return costs

        variants = [("two round trips", False, True), ("one statement", True, True)]
        if args.count_trigger or args.status_trigger:
            on, off = ("recorded", "not recorded") if args.status_trigger else ("counted",
                                                                               "not counted")
            variants = [(f"{name}, {on if counting else off}", path, counting)
                        for name, path, _ in variants for counting in (False, True)]
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _, _ in
                                                                 variants}
        for _ in range(args.rounds):
            for name, one_statement, counting in variants:
                results[name].append(measure(one_statement, counting))
        count_pings(True)
        with app.app_context():
            db.engine.dispose()
    for name, runs in results.items():
        wall, cpu, server = (median([run[n] for run in runs]) for n in range(3))
        print(f"  {name:30s} per batch: wall {wall:4.0f} us, writer CPU {cpu:4.0f} us, "
              f"PostgreSQL backend CPU {server:4.0f} us", flush=True)


if __name__ == "__main__":
    main()
