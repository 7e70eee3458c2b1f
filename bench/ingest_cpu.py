"""Where a ping's CPU goes: per-request CPU of the gunicorn workers, of PostgreSQL and of the
whole machine, for the hello-world baseline and the service, under the ingest benchmark's load.

    .venv/bin/python bench/ingest_cpu.py [extra gunicorn arguments]

Reads utime+stime from /proc for the worker processes and every `postgres` process before
and after one wrk run of 8 s (after a 3 s warm-up), and /proc/stat for the machine; divides
by the requests served. `idle` is the share of the machine's CPU time nobody used: a high
figure means the load is bound by latency, not CPU. For the service it also counts how many
of the applications' row updates PostgreSQL made HOT (heap only, no index entries).
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys

from bench_ingest import application_uuid_file, run_wrk, service_environment
from common import bench_database, connect, gunicorn, scratch_dir, worker_pids

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def postgres_pids() -> list[int]:
    output = subprocess.run(["pgrep", "-u", "postgres"], capture_output=True, text=True).stdout
    return [int(pid) for pid in output.split()]


def machine_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    values = [int(value) for value in open("/proc/stat").readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICKS, sum(values) / TICKS


def hot_updates(database_url: str) -> str:
    """The share of the applications' row updates that were HOT (no index entry written),
    counted by PostgreSQL once the servers' connections have closed."""
    with contextlib.closing(connect(database_url)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                       "WHERE relname = 'applications'")
        updated, hot = cursor.fetchone()
    return f"; HOT updates of applications {hot:,} of {updated:,}"


def main() -> None:
    extra = sys.argv[1:]
    with bench_database() as database_url, scratch_dir() as scratch:
        uuid_file = application_uuid_file(database_url, scratch)
        environment = service_environment(database_url, scratch)
        for spec, uuids, pythonpath in (("hello:app", None, "bench"),
                                        ("app:create_app()", uuid_file, None)):
            with gunicorn(spec, environment, 2, 8, scratch / "gunicorn.log", pythonpath,
                          ["--keep-alive", "0", *extra]) as (port, master):
                run_wrk(port, 3, uuids)
                workers = worker_pids(master.pid)
                before = (cpu_seconds(workers), cpu_seconds(postgres_pids()), *machine_seconds())
                result = run_wrk(port, 8, uuids)
                after = (cpu_seconds(workers), cpu_seconds(postgres_pids()), *machine_seconds())
            worker, postgres, busy, total = (b - a for a, b in zip(before, after))
            updates = hot_updates(database_url) if uuids else ""
            per_request = 1e6 / result["requests"]
            print(f"{spec:18s} {result['rps']:5.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
                  f"p99 {result['p99_ms']:.1f} ms; CPU per request: workers "
                  f"{worker * per_request:.0f} us, PostgreSQL {postgres * per_request:.0f} us, "
                  f"machine {busy * per_request:.0f} us; idle {100 * (1 - busy / total):.0f}%"
                  f"{updates}", flush=True)


if __name__ == "__main__":
    main()
