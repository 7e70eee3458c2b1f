"""Slug pings against UUID pings (SPEC §9): a slug ping costs within 10% of a UUID ping.

    .venv/bin/python bench/bench_slug_pings.py [--rounds 6] [--seconds 8]

One gunicorn server (the ingest benchmark's settings: 2 workers, 8 threads, keep-alive 0,
PostgreSQL) and 200 applications, each with a slug, and one ping key. wrk (-t2 -c16,
bench/load.lua) drives it in turn with `GET /ping/<uuid>` and `GET /ping/<ping-key>/<slug>`
to the applications at random: a 3 s warm-up each, then rounds that alternate the two, so a
slow patch of a shared machine falls on both alike. Reports each one's median req/s, each
round pair's ratio, and the median of those ratios (slug / UUID; target >= 0.90); and the
workers' CPU per ping (utime + stime from /proc over each run, divided by its requests), which
other load on the machine disturbs less than req/s does (UUID / slug: >= 0.90 too).

Then, in this process, what the ping fast path itself (ingest/fast_path.py, in front of Flask)
spends on each form with the writer replaced by a no-op: parsing, rate limits, the route
look-up, the answer. Best of 30 rounds of 5,000 calls each, alternating (and in turn first):
the slug form's extra work in microseconds, without HTTP, the writer or the database.

The warm-up lets each worker learn the routes (ingest/slug_routes.py), as a running service
has: it looks a route up again only after a slug or a ping key changes.
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import time

from bench_ingest import CONNECTIONS, describe, run_wrk, service_environment
from common import (bench_database, gunicorn, machine, median, print_server_log_errors, report,
                    scratch_dir, worker_pids)
from ingest_cpu import cpu_seconds

APPLICATIONS = 200
TARGET_RATIO = 0.90


def create_slug_applications(database_url: str, count: int) -> tuple[list[str], list[str]]:
    """`count` applications with slugs and one ping key: (UUID paths, key/slug paths)."""
    from app import create_app
    from applications import create_application
    from database import db
    from ping_keys import create_ping_key
    app = create_app({"DATABASE_URL": database_url, "MONITOR_ENABLED": False,
                      "LOG_LEVEL": "WARNING"})
    now = dt.datetime.now(dt.timezone.utc)
    with app.app_context():
        applications = [create_application({"name": f"bench-{i}", "slug": f"bench-job-{i}",
                                            "period_seconds": 3600}, now)
                        for i in range(count)]
        _, key = create_ping_key("bench", now)
        paths = ([application.uuid for application in applications],
                 [f"{key}/{application.slug}" for application in applications])
        db.engine.dispose()
    return paths


def fast_path_cost(database_url: str, paths: dict[str, str], rounds: int = 30,
                   calls: int = 5000) -> dict[str, float]:
    """Microseconds per call of the app's WSGI entry (the fast path) for each path, with the
    writer a no-op: best of `rounds`, the forms alternating."""
    from app import create_app
    from database import db

    class NoWriter:
        def accept(self, application_uuid, signal) -> None:
            pass

    app = create_app({"DATABASE_URL": database_url, "MONITOR_ENABLED": False,
                      "LOG_LEVEL": "WARNING", "RATE_LIMIT_STORAGE_URL": "memory://",
                      "PING_RATE_LIMIT": "100000000/minute",
                      "PING_CLIENT_RATE_LIMIT": "100000000/minute"})
    runtime = app.extensions["hbmon"]
    writer, runtime.writer = runtime.writer, NoWriter()

    def start_response(status: str, headers) -> None:
        assert status.startswith("200"), status

    environs = {name: {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "",
                       "REMOTE_ADDR": "127.0.0.1", "HTTP_USER_AGENT": "wrk",
                       "wsgi.url_scheme": "http", "SERVER_NAME": "bench", "SERVER_PORT": "80"}
                for name, path in paths.items()}
    best = {name: float("inf") for name in paths}
    for round_number in range(rounds):
        order = list(environs.items())
        for name, environ in order if round_number % 2 else reversed(order):
            started = time.perf_counter()
            for _ in range(calls):
                app.wsgi_app(dict(environ), start_response)
            best[name] = min(best[name], (time.perf_counter() - started) / calls * 1e6)
    runtime.writer = writer
    runtime.shutdown()
    with app.app_context():
        db.engine.dispose()
    return best


def main() -> bool:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk; `make bench` does it)")
    print(f"slug pings: {machine()}; gunicorn -c gunicorn.conf.py --workers 2 --threads 8 "
          f"--keep-alive 0; wrk -t2 -c{CONNECTIONS}, {args.rounds} x {args.seconds} s each, "
          "alternating", flush=True)
    with bench_database() as database_url, scratch_dir() as scratch:
        uuid_paths, slug_paths = create_slug_applications(database_url, APPLICATIONS)
        files = {"uuid": scratch / "uuids.txt", "slug": scratch / "slugs.txt"}
        files["uuid"].write_text("\n".join(uuid_paths) + "\n")
        files["slug"].write_text("\n".join(slug_paths) + "\n")
        log_path = scratch / "gunicorn.log"
        with gunicorn("app:create_app()", service_environment(database_url, scratch), 2, 8,
                      log_path, extra_args=["--keep-alive", "0"]) as (port, master):
            for path in files.values():
                run_wrk(port, 3, str(path))
            results: dict[str, list[dict[str, float]]] = {name: [] for name in files}
            for _ in range(args.rounds):
                for name, path in files.items():
                    workers = worker_pids(master.pid)  # as of now: gunicorn may replace one
                    before = cpu_seconds(workers)
                    run = run_wrk(port, args.seconds, str(path))
                    run["cpu_us"] = (cpu_seconds(workers) - before) / run["requests"] * 1e6
                    results[name].append(run)
        uuid_runs, slug_runs = results["uuid"], results["slug"]
        ratios = [slug["rps"] / by_uuid["rps"] for by_uuid, slug in zip(uuid_runs, slug_runs)]
        cpu_ratios = [by_uuid["cpu_us"] / slug["cpu_us"]
                      for by_uuid, slug in zip(uuid_runs, slug_runs)]
        ratio, cpu_ratio = median(ratios), median(cpu_ratios)
        errors = sum(run["errors"] for run in uuid_runs + slug_runs)
        for name, runs in (("UUID", uuid_runs), ("slug", slug_runs)):
            print(f"  {name} pings: {describe(runs)}; worker CPU per ping "
                  f"{median([run['cpu_us'] for run in runs]):.0f} us (rounds "
                  f"{', '.join(format(run['cpu_us'], '.0f') for run in runs)})")
        print(f"  slug/UUID req/s by round: {', '.join(f'{value:.3f}' for value in ratios)}")
        print(f"  UUID/slug CPU per ping by round: "
              f"{', '.join(f'{value:.3f}' for value in cpu_ratios)}")
        passed = report("slug ping throughput", f"slug/UUID = {ratio:.3f} (median of the "
                        f"rounds' ratios; target >= {TARGET_RATIO:.2f})", ratio >= TARGET_RATIO)
        passed &= report("slug ping CPU", f"UUID/slug worker CPU per ping = {cpu_ratio:.3f} "
                         f"(median of the rounds' ratios; target >= {TARGET_RATIO:.2f})",
                         cpu_ratio >= TARGET_RATIO)
        passed &= report("slug ping errors", f"{errors} (target 0)", errors == 0)
        cost = fast_path_cost(database_url, {"uuid": f"/ping/{uuid_paths[0]}",
                                             "slug": f"/ping/{slug_paths[0]}"})
        print(f"  fast path in process, writer a no-op: UUID ping {cost['uuid']:.1f} us, "
              f"slug ping {cost['slug']:.1f} us ({cost['slug'] - cost['uuid']:+.1f} us)")
        print_server_log_errors(log_path)
    return passed


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
