"""Ingest with the rate limits shared through Redis, against the better hello-world.

    .venv/bin/python bench/bench_redis_limits.py [--before path/to/other/checkout]
                                                 [--worker-class gevent_pywsgi ...]
                                                 [--rounds 3] [--seconds 8]

Side by side, 2 workers each, `--keep-alive 0`, wrk -t2 -c16 (bench/load.lua, 200
applications), round after round so a slow patch of the shared machine falls on all alike:

- hello-world (bench/hello.py) with sync workers, and with gthread workers (8 threads): the
  baseline is the better of the two, as a new user would pick;
- the service as the README runs it in production (`gunicorn -c gunicorn.conf.py`, gevent
  workers) with RATE_LIMIT_STORAGE_URL on Redis, and with counters in each process
  (`memory://`);
- with --before, the same Redis service from another checkout (the code before a change);
- with --worker-class, hello-world and the Redis service under other gunicorn worker classes
  (a trial; the baseline stays the better of sync and gthread).

Prints each one's median req/s, p99 and errors, and the ratios to the better hello-world.
Target: the service with Redis >= 0.5x.
"""
from __future__ import annotations

import argparse
import contextlib
import os

from bench_ingest import alternate, application_uuid_file, describe, service_environment
from common import ROOT, bench_database, gunicorn, machine, median, report, scratch_dir

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="another checkout: its service with Redis, too")
    parser.add_argument("--worker-class", action="append", default=[],
                        help="also serve the Redis service with this gunicorn worker class")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    served = ["--keep-alive", "0"]
    print(f"redis limits: {machine()}; 2 workers each, wrk -t2 -c16, {args.rounds} x "
          f"{args.seconds} s, alternating", flush=True)
    with bench_database() as database_url, scratch_dir() as scratch, \
            contextlib.ExitStack() as stack:
        uuids = application_uuid_file(database_url, scratch)
        log = scratch / "gunicorn.log"

        def serve(name: str, app_spec: str, extra: list[str], cwd=ROOT, **settings: str) -> int:
            environment = service_environment(database_url, scratch, name, **settings)
            pythonpath = "bench" if app_spec.startswith("hello") else None
            port, _ = stack.enter_context(gunicorn(app_spec, environment, 2, 8, log, pythonpath,
                                                   served + extra, cwd=cwd))
            return port

        servers = {
            "hello sync": (serve("hello-sync", "hello:app", ["--worker-class", "sync"]), None),
            "hello gthread": (serve("hello-gthread", "hello:app",
                                    ["--worker-class", "gthread"]), None),
            "ping, Redis": (serve("redis", "app:create_app()", [],
                                  RATE_LIMIT_STORAGE_URL=REDIS_URL), uuids),
            "ping, memory": (serve("memory", "app:create_app()", [],
                                   RATE_LIMIT_STORAGE_URL="memory://"), uuids),
        }
        if args.before:
            servers["ping, Redis, before"] = (serve("before", "app:create_app()", [],
                                                    cwd=args.before,
                                                    RATE_LIMIT_STORAGE_URL=REDIS_URL), uuids)
        for worker_class in args.worker_class:
            servers[f"hello {worker_class}"] = (
                serve(f"hello-{worker_class}", "hello:app", ["--worker-class", worker_class]),
                None)
            servers[f"ping, Redis, {worker_class}"] = (
                serve(f"redis-{worker_class}", "app:create_app()",
                      ["--worker-class", worker_class], RATE_LIMIT_STORAGE_URL=REDIS_URL), uuids)
        results = alternate(servers, args.rounds, args.seconds)
    rps = {name: median([run["rps"] for run in runs]) for name, runs in results.items()}
    baseline_name = max(("hello sync", "hello gthread"), key=rps.get)
    for name, runs in results.items():
        print(f"  {name:26s} {describe(runs)}; x{rps[name] / rps[baseline_name]:.2f} of "
              f"{baseline_name}", flush=True)
    redis_runs = results["ping, Redis"]
    ratio = rps["ping, Redis"] / rps[baseline_name]
    p99 = max(run["p99_ms"] for run in redis_runs)
    errors = sum(run["errors"] for run in redis_runs)
    passed = report("ingest with limits in Redis",
                    f"ping/{baseline_name} = {ratio:.2f} (target >= 0.50), p99 {p99:.1f} ms, "
                    f"{errors} errors", ratio >= 0.5 and p99 < 50 and errors == 0)
    raise SystemExit(0 if passed else 1)


if __name__ == "__main__":
    main()
