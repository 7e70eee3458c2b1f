"""Target 1 (and the scaling figure of target 6): ping throughput under gunicorn + PostgreSQL.

The service and a hello-world Flask app are served by the same gunicorn settings, and
hello-world also by plain sync workers; wrk drives them with 16 connections, alternating, and
the ping throughput is reported as a ratio of the better hello-world throughput measured in
the same run. Pings go to 200 applications at random.
"""
from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import subprocess
import sys
from pathlib import Path

from common import (ROOT, bench_database, gunicorn, machine, median, print_server_log_errors,
                    report, scratch_dir, server_environment)

CONNECTIONS = 16
APPLICATIONS = 200
RESULT = re.compile(r"RESULT (.*)")


def create_applications(database_url: str, count: int) -> list[str]:
    from app import create_app
    from applications import create_application
    from database import db
    app = create_app({"DATABASE_URL": database_url, "MONITOR_ENABLED": False,
                      "LOG_LEVEL": "WARNING"})
    now = dt.datetime.now(dt.timezone.utc)
    with app.app_context():
        uuids = [create_application({"name": f"bench-{i}", "period_seconds": 3600}, now).uuid
                 for i in range(count)]
        db.engine.dispose()
    return uuids


def application_uuid_file(database_url: str, scratch: Path) -> str:
    """Create APPLICATIONS applications; the file of their UUIDs that load.lua pings."""
    path = scratch / "uuids.txt"
    path.write_text("\n".join(create_applications(database_url, APPLICATIONS)) + "\n")
    return str(path)


def service_environment(database_url: str, scratch: Path, name: str = "service",
                        **settings: str) -> dict[str, str]:
    """A served instance's environment, with its own spool and metrics directories."""
    return server_environment(database_url, SPOOL_DIR=str(scratch / f"spool-{name}"),
                              PROMETHEUS_MULTIPROC_DIR=str(scratch / f"prometheus-{name}"),
                              **settings)


def run_wrk(port: int, seconds: int, uuid_file: str | None) -> dict[str, float]:
    command = ["wrk", "-t", "2", "-c", str(CONNECTIONS), "-d", f"{seconds}s", "--timeout", "5s",
               "-s", str(ROOT / "bench" / "load.lua"), f"http://127.0.0.1:{port}"]
    if uuid_file:
        command += ["--", uuid_file]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    fields = dict(item.split("=") for item in RESULT.search(output).group(1).split())
    values = {name: int(value) for name, value in fields.items()}
    errors = sum(values[name] for name in ("connect", "read", "write", "status", "timeout"))
    return {"rps": values["requests"] / (values["duration_us"] / 1e6), "errors": errors,
            "requests": values["requests"], "p50_ms": values["p50_us"] / 1000,
            "p99_ms": values["p99_us"] / 1000}


def describe(runs: list[dict[str, float]]) -> str:
    return (f"{median([r['rps'] for r in runs]):.0f} req/s "
            f"(rounds {', '.join(format(r['rps'], '.0f') for r in runs)}), "
            f"p99 {max(r['p99_ms'] for r in runs):.1f} ms, "
            f"errors {sum(r['errors'] for r in runs)}/{sum(r['requests'] for r in runs)}")


def alternate(servers: dict[str, tuple[int, str | None]], rounds: int,
              seconds: int) -> dict[str, list[dict[str, float]]]:
    """Warm every server up, then run them in turn, `rounds` times."""
    for port, uuid_file in servers.values():
        run_wrk(port, 3, uuid_file)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    for _ in range(rounds):
        for name, (port, uuid_file) in servers.items():
            results[name].append(run_wrk(port, seconds, uuid_file))
    return results


def main() -> bool:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker")
    parser.add_argument("--keep-alive", type=int, default=0,
                        help="gunicorn --keep-alive for both servers; 0 (the default here) "
                             "closes each connection after one request, as curl from cron does")
    parser.add_argument("--no-scaling", action="store_true", help="skip 2 vs 4 workers")
    args = parser.parse_args()
    served = ["--keep-alive", str(args.keep_alive)]
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk; `make bench` does it)")
    print(f"ingest: {machine()}; gunicorn -c gunicorn.conf.py --workers 2 --threads "
          f"{args.threads} --keep-alive {args.keep_alive}; wrk -t2 -c{CONNECTIONS}, "
          f"{args.rounds} x {args.seconds} s each, alternating", flush=True)
    passed = True
    with bench_database() as database_url, scratch_dir() as scratch:
        uuid_file = application_uuid_file(database_url, scratch)
        environment = service_environment(database_url, scratch)
        log_path = scratch / "gunicorn.log"
        # The baseline is the better of hello-world under the service's worker settings and
        # under plain sync workers (which serve it faster on some machines).
        with gunicorn("hello:app", environment, 2, args.threads, log_path, pythonpath="bench",
                      extra_args=served) as (hello_port, _), \
                gunicorn("hello:app", environment, 2, 1, log_path, pythonpath="bench",
                         extra_args=served + ["--worker-class", "sync"]) as (sync_port, _), \
                gunicorn("app:create_app()", environment, 2, args.threads, log_path,
                         extra_args=served) as (ping_port, _):
            results = alternate({"hello": (hello_port, None), "hello sync": (sync_port, None),
                                 "ping": (ping_port, uuid_file)}, args.rounds, args.seconds)
        hello = max(results["hello"], results["hello sync"],
                    key=lambda runs: median([r["rps"] for r in runs]))
        ping = results["ping"]
        print(f"  hello-world, service's workers: {describe(results['hello'])}")
        print(f"  hello-world, sync workers:      {describe(results['hello sync'])}")
        ratio = median([r["rps"] for r in ping]) / median([r["rps"] for r in hello])
        p99 = max(r["p99_ms"] for r in ping)
        errors = sum(r["errors"] for r in ping)
        print(f"  ping:        {describe(ping)} (against the better hello-world)")
        passed &= report("ingest throughput", f"ping/hello = {ratio:.2f} (target >= 0.50)",
                         ratio >= 0.5)
        passed &= report("ingest p99", f"{p99:.1f} ms (target < 50 ms)", p99 < 50)
        passed &= report("ingest errors", f"{errors} (target 0)", errors == 0)

        if not args.no_scaling:
            with gunicorn("app:create_app()", environment, 2, args.threads, log_path,
                          extra_args=served) as (two_port, _), \
                    gunicorn("app:create_app()", environment, 4, args.threads, log_path,
                             extra_args=served) as (four_port, _):
                scaling = alternate({"2 workers": (two_port, uuid_file),
                                     "4 workers": (four_port, uuid_file)},
                                    args.rounds, args.seconds)
            two, four = scaling["2 workers"], scaling["4 workers"]
            print(f"  ping, 2 workers: {describe(two)}")
            print(f"  ping, 4 workers: {describe(four)}")
            print(f"  scaling: 4 workers / 2 workers = "
                  f"{median([r['rps'] for r in four]) / median([r['rps'] for r in two]):.2f} "
                  "(informational)", flush=True)
        print_server_log_errors(log_path)
    return passed


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
