"""Two variants of the service against hello-world, under the ingest benchmark's load.

    .venv/bin/python bench/compare_ingest.py --a INGEST_BATCH_WINDOW_SECONDS=0.001 \\
        --b INGEST_BATCH_WINDOW_SECONDS=0.002 [--a-dir path/to/other/checkout] [--rounds 4]

Three gunicorn servers run side by side (hello-world, variant A, variant B: settings given as
NAME=value, or another checkout of the code for A); wrk drives them in turn, round after
round, so a slow patch of a shared machine falls on all three alike. Prints each one's median
req/s and its ratio to hello-world.
"""
from __future__ import annotations

import argparse

from bench_ingest import application_uuid_file, run_wrk, service_environment
from common import ROOT, bench_database, gunicorn, median, scratch_dir


def settings(pairs: list[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", nargs="*", default=[], help="settings of variant A")
    parser.add_argument("--b", nargs="*", default=[], help="settings of variant B")
    parser.add_argument("--a-dir", default=str(ROOT), help="checkout variant A runs from")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--worker-class", help="gunicorn worker class of all three servers "
                        "(default: gunicorn.conf.py's), e.g. gthread to set a checkout that "
                        "predates gevent workers against the code now")
    args = parser.parse_args()
    with bench_database() as database_url, scratch_dir() as scratch:
        uuids = application_uuid_file(database_url, scratch)

        def environment(name: str, pairs: list[str]) -> dict[str, str]:
            return service_environment(database_url, scratch, name, **settings(pairs))
        log, served = scratch / "gunicorn.log", ["--keep-alive", "0"]
        if args.worker_class:
            served += ["--worker-class", args.worker_class]
        with gunicorn("hello:app", environment("hello", []), 2, 8, log, "bench",
                      served) as (hello, _), \
                gunicorn("app:create_app()", environment("a", args.a), 2, 8, log,
                         extra_args=served, cwd=args.a_dir) as (a, _), \
                gunicorn("app:create_app()", environment("b", args.b), 2, 8, log,
                         extra_args=served) as (b, _):
            servers = {"hello": (hello, None), "A": (a, uuids), "B": (b, uuids)}
            for port, uuid_list in servers.values():
                run_wrk(port, 3, uuid_list)
            results: dict[str, list[float]] = {name: [] for name in servers}
            for _ in range(args.rounds):
                for name, (port, uuid_list) in servers.items():
                    results[name].append(run_wrk(port, args.seconds, uuid_list)["rps"])
    baseline = median(results["hello"])
    for name, rounds in results.items():
        label = {"A": f"A {' '.join(args.a)}", "B": f"B {' '.join(args.b)}"}.get(name, name)
        print(f"{label:50s} {median(rounds):5.0f} req/s, ratio {median(rounds) / baseline:.3f} "
              f"(rounds {', '.join(f'{value:.0f}' for value in rounds)})")


if __name__ == "__main__":
    main()
