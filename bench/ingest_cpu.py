"""Where a ping's CPU goes: per-request CPU of the gunicorn workers, of PostgreSQL, of Redis and
of the whole machine, for the hello-world baselines and the service, under the ingest
benchmark's load.

    .venv/bin/python bench/ingest_cpu.py [extra gunicorn arguments]

hello-world with sync and with gthread workers (8 threads); the service as the README runs it
in production (gevent workers), with its rate-limit counters in each process (`memory://`) and
in Redis (BENCH_REDIS_URL, database 14 by default). 2 workers each, `--keep-alive 0`.

Reads utime+stime from /proc for the worker processes, every `postgres` process and the
`redis-server` before and after one wrk run of 8 s (after a 3 s warm-up), and /proc/stat for
the machine; divides by the requests served. `idle` is the share of the machine's CPU time
nobody used: a high figure means the load is bound by latency, not CPU. For the service it
also counts how many of the applications' row updates PostgreSQL made HOT (heap only, no index
entries).
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys

from bench_ingest import application_uuid_file, run_wrk, service_environment
from common import (
    TICKS,
    bench_database,
    connect,
    gunicorn,
    process_cpu_seconds,
    scratch_dir,
    worker_pids,
)

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def cpu_seconds(pids: list[int]) -> float:
    """The processes' CPU time so far; those that have exited count nothing."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            total += process_cpu_seconds(pid)
    return total


def pids(*pgrep_arguments: str) -> list[int]:
    output = subprocess.run(["pgrep", *pgrep_arguments], capture_output=True, text=True).stdout
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
        variants = (
            ("hello, sync", "hello:app", None, ["--worker-class", "sync"], {}),
            ("hello, gthread", "hello:app", None, ["--worker-class", "gthread"], {}),
            ("ping, memory", "app:create_app()", uuid_file, [],
             {"RATE_LIMIT_STORAGE_URL": "memory://"}),
            ("ping, Redis", "app:create_app()", uuid_file, [],
             {"RATE_LIMIT_STORAGE_URL": REDIS_URL}),
        )
        for name, spec, uuids, worker_class, settings in variants:
            environment = service_environment(database_url, scratch, name.replace(", ", "-"),
                                              **settings)
            pythonpath = "bench" if uuids is None else None
            with gunicorn(spec, environment, 2, 8, scratch / "gunicorn.log", pythonpath,
                          ["--keep-alive", "0", *worker_class, *extra]) as (port, master):
                run_wrk(port, 3, uuids)
                workers = worker_pids(master.pid)
                postgres, redis_server = pids("-u", "postgres"), pids("-x", "redis-server")
                before = (cpu_seconds(workers), cpu_seconds(postgres), cpu_seconds(redis_server),
                          *machine_seconds())
                result = run_wrk(port, 8, uuids)
                after = (cpu_seconds(workers), cpu_seconds(postgres), cpu_seconds(redis_server),
                         *machine_seconds())
            worker, postgres, redis_cpu, busy, total = (b - a for a, b in zip(before, after))
            updates = hot_updates(database_url) if uuids else ""
            per_request = 1e6 / result["requests"]
            print(f"{name:15s} {result['rps']:5.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
                  f"p99 {result['p99_ms']:.1f} ms; CPU per request: workers "
                  f"{worker * per_request:.0f} us, PostgreSQL {postgres * per_request:.0f} us, "
                  f"Redis {redis_cpu * per_request:.0f} us, machine {busy * per_request:.0f} us; "
                  f"idle {100 * (1 - busy / total):.0f}%{updates}", flush=True)


if __name__ == "__main__":
    main()
