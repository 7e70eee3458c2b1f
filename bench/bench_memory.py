"""Target 5: a worker's RSS stays flat over 1,000,000 heartbeats.

The service is served as in the ingest benchmark (gunicorn, 2 workers, PostgreSQL) and wrk
pings 200 applications in rounds until the workers have answered the requested number of
heartbeats. Baseline: each worker's RSS after the first 5% (warm: pools, caches and imports
filled); growth is measured against it, in the same run.
"""
from __future__ import annotations

import argparse
import sys
import time

from bench_ingest import application_uuid_file, run_wrk, service_environment
from common import (bench_database, gunicorn, machine, report, rss_bytes, scratch_dir,
                    worker_pids)

MB = 1024 * 1024


def main() -> bool:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--heartbeats", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    warmup = max(10_000, args.heartbeats // 20)
    print(f"memory: {machine()}; gunicorn -c gunicorn.conf.py --workers 2 --threads "
          f"{args.threads} --keep-alive 0; wrk -t2 -c16 in 20 s rounds until "
          f"{args.heartbeats:,} heartbeats", flush=True)
    with bench_database() as database_url, scratch_dir() as scratch:
        uuid_file = application_uuid_file(database_url, scratch)
        environment = service_environment(database_url, scratch)
        with gunicorn("app:create_app()", environment, 2, args.threads, scratch / "gunicorn.log",
                      extra_args=["--keep-alive", "0"]) as (port, master):
            served, errors, baseline = 0, 0, None
            while len(worker_pids(master.pid)) < 2:
                time.sleep(0.1)
            workers = sorted(worker_pids(master.pid))
            while served < args.heartbeats:
                result = run_wrk(port, 20, uuid_file)
                served += result["requests"]
                errors += result["errors"]
                if sorted(worker_pids(master.pid)) != workers:
                    print(f"  a worker was replaced ({workers} -> {worker_pids(master.pid)}); "
                          "RSS figures would mean nothing")
                    print((scratch / "gunicorn.log").read_text()[-2000:])
                    return False
                rss = {pid: rss_bytes(pid) for pid in workers}
                if baseline is None and served >= warmup:
                    baseline = rss
                    print(f"  baseline after {served:,} heartbeats: "
                          + ", ".join(f"{r / MB:.1f} MB" for r in rss.values()), flush=True)
                elif baseline is not None:
                    print(f"  after {served:,}: " + ", ".join(
                        f"{r / MB:.1f} MB ({(r - baseline[pid]) / MB:+.1f})"
                        for pid, r in rss.items()), flush=True)
        growth = max(rss[pid] - baseline[pid] for pid in workers)
        ratio = max(rss[pid] / baseline[pid] for pid in workers)
        passed = report("memory", f"worst worker grew {growth / MB:+.1f} MB over {served:,} "
                        f"heartbeats, final/baseline RSS {ratio:.3f}, {errors} errors "
                        "(target < 10 MB)", growth < 10 * MB and errors == 0)
    return passed


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
