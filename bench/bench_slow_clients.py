"""Slow clients against pings, and ping throughput, for each gunicorn worker class.

Each class is served as production runs it (gunicorn.conf.py, 2 workers; gthread with 8
threads, and with 128 so that 2 workers have a thread for each slow connection; sync with one;
gevent with 1,000 connections a worker) against PostgreSQL, one after another:

1. throughput: wrk pings 200 applications with 16 connections (as bench_ingest.py), and a
   hello-world app under the same class, for the ratio; all the servers run side by side and
   are driven in turn, round after round;
2. slow clients: 200 connections each send a ping's headers declaring a 1,000-byte body and
   3 bytes of it, then hold still; 2 s later, 8 clients send 200 bodyless pings, each on a new
   connection (curl from cron), with a 3 s timeout. The same pings without slow clients are
   the baseline.

Target: with the production class, 200 slow connections open, pings answered with p99 <
100 ms and none failing.
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from bench_ingest import application_uuid_file, run_wrk, service_environment
from common import bench_database, gunicorn, machine, median, report, scratch_dir
from tests.faults import SlowClients, timed_ping

SLOW_CONNECTIONS = 200
PINGS = 200
PING_CLIENTS = 8
PING_TIMEOUT_SECONDS = 3.0
# Name: (worker class, threads per worker).
SETUPS = {"sync": ("sync", 1), "gthread": ("gthread", 8), "gthread-128": ("gthread", 128),
          "gevent": ("gevent", 1)}
PRODUCTION_SETUP = "gevent"
SETTLE_SECONDS = 2.0  # for the server to take in the slow connections' headers


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def wait_until_served(port: int, path: str) -> None:
    """gunicorn listens before its workers have loaded the app: wait for a first answer."""
    for _ in range(60):
        status, _ = timed_ping(port, path, 30)
        if status is not None:
            return
    raise RuntimeError("the server never answered")


def ping_latencies(port: int, uuids: list[str]) -> tuple[list[float], int]:
    """Seconds of each answered ping and the number that failed or timed out. Pings go in
    rounds of PING_CLIENTS; a round in which none is answered ends the run (a server that
    answers nothing would otherwise take PINGS / PING_CLIENTS timeouts)."""
    answered: list[float] = []
    failed = 0
    with ThreadPoolExecutor(PING_CLIENTS) as pool:
        for start in range(0, PINGS, PING_CLIENTS):
            results = list(pool.map(lambda n: timed_ping(port, uuids[n % len(uuids)],
                                                         PING_TIMEOUT_SECONDS),
                                    range(start, start + PING_CLIENTS)))
            round_answered = [seconds for status, seconds in results if status == 200]
            answered += round_answered
            failed += len(results) - len(round_answered)
            if not round_answered:
                break
    return answered, failed


def describe(latencies: list[float], failed: int) -> str:
    sent = len(latencies) + failed
    if not latencies:
        return f"0/{sent} answered (stopped after a round of {PING_CLIENTS} got no answer)"
    return (f"{len(latencies)}/{sent} answered, p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, failed {failed}")


def served_args(name: str) -> list[str]:
    return ["--keep-alive", "0", "--worker-class", SETUPS[name][0]]


def throughput(names: list[str], database_url: str, scratch, uuid_file: str, uuids: list[str],
               rounds: int, seconds: int) -> None:
    """Every setup's service and hello-world side by side, driven in turn, round after round,
    so a busy patch of the shared machine falls on all of them alike."""
    with contextlib.ExitStack() as stack:
        ports = {}
        for name in names:
            environment = service_environment(database_url, scratch, name=name)
            log_path = scratch / f"gunicorn-{name}.log"
            threads = SETUPS[name][1]
            ports[(name, "hello")] = stack.enter_context(gunicorn(
                "hello:app", environment, 2, threads, log_path, pythonpath="bench",
                extra_args=served_args(name)))[0]
            ports[(name, "ping")] = stack.enter_context(gunicorn(
                "app:create_app()", environment, 2, threads, log_path,
                extra_args=served_args(name)))[0]
        for (name, kind), port in ports.items():
            wait_until_served(port, uuids[0])
            run_wrk(port, 2, uuid_file if kind == "ping" else None)
        results: dict = {key: [] for key in ports}
        for _ in range(rounds):
            for (name, kind), port in ports.items():
                results[(name, kind)].append(
                    run_wrk(port, seconds, uuid_file if kind == "ping" else None))
    reference = median([r["rps"] for r in results[(names[0], "ping")]])
    for name in names:
        ping, hello = results[(name, "ping")], results[(name, "hello")]
        ping_rps, hello_rps = (median([r["rps"] for r in runs]) for runs in (ping, hello))
        print(f"  {name:11s} throughput: ping {ping_rps:.0f} req/s (rounds "
              f"{', '.join(format(r['rps'], '.0f') for r in ping)}; p99 "
              f"{max(r['p99_ms'] for r in ping):.1f} ms; errors {sum(r['errors'] for r in ping)}), "
              f"hello-world {hello_rps:.0f} req/s, ping/hello {ping_rps / hello_rps:.2f}, "
              f"ping/{names[0]} ping {ping_rps / reference:.2f}", flush=True)


def slow_clients(name: str, database_url: str, scratch, uuids: list[str]) -> bool:
    worker_class, threads = SETUPS[name]
    environment = service_environment(database_url, scratch, name=f"slow-{name}")
    with gunicorn("app:create_app()", environment, 2, threads,
                  scratch / f"gunicorn-slow-{name}.log",
                  extra_args=served_args(name)) as (port, _):
        wait_until_served(port, uuids[0])
        quiet, quiet_failed = ping_latencies(port, uuids)
        slow = SlowClients(port, f"/ping/{uuids[0]}", SLOW_CONNECTIONS)
        time.sleep(SETTLE_SECONDS)
        try:
            loaded, loaded_failed = ping_latencies(port, uuids)
        finally:
            slow.cut()
    print(f"  {name:11s} pings alone:             {describe(quiet, quiet_failed)}")
    print(f"  {name:11s} pings with slow clients: {describe(loaded, loaded_failed)}", flush=True)
    if name != PRODUCTION_SETUP:
        return True
    p99_ms = percentile(loaded, 0.99) * 1000 if loaded else float("inf")
    ratio = p99_ms / (percentile(quiet, 0.99) * 1000) if quiet else float("inf")
    return report("pings beside slow clients",
                  f"{name}: p99 {p99_ms:.1f} ms with {SLOW_CONNECTIONS} slow connections open "
                  f"({ratio:.2f} x without), {loaded_failed} failed (target < 100 ms, 0 failed)",
                  p99_ms < 100 and loaded_failed == 0)


def main() -> bool:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8, help="wrk seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--setups", default=",".join(SETUPS))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk; `make bench` does it)")
    names = args.setups.split(",")
    print(f"slow clients: {machine()}; gunicorn -c gunicorn.conf.py --workers 2 "
          f"--worker-class C; wrk -t2 -c16 {args.rounds} x {args.seconds} s, all setups in "
          f"turn; {SLOW_CONNECTIONS} slow connections, {PINGS} pings from {PING_CLIENTS} "
          "clients", flush=True)
    with bench_database() as database_url, scratch_dir() as scratch:
        uuid_file = application_uuid_file(database_url, scratch)
        uuids = open(uuid_file).read().split()
        throughput(names, database_url, scratch, uuid_file, uuids, args.rounds, args.seconds)
        passed = True
        for name in names:
            passed &= slow_clients(name, database_url, scratch, uuids)
    return passed


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
