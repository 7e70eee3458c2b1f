"""Every benchmark of issue 7, one after another; the summary lists each PASS/FAIL line.

`make bench` runs this. `--quick` shortens the ingest rounds and the memory run (1,000,000
heartbeats take about half an hour on 2 cores) for a smoke run; BENCHMARKS.md quotes full runs.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    runs = [["bench_wrappers.py"], ["bench_detection.py"], ["bench_drain.py"],
            ["bench_alerts_on_time.py"],
            ["bench_ingest.py"] + (["--rounds", "2", "--seconds", "5"] if args.quick else []),
            ["bench_slug_pings.py"] + (["--rounds", "2", "--seconds", "5"] if args.quick else []),
            ["bench_redis_limits.py"] + (["--rounds", "1", "--seconds", "5"] if args.quick else []),
            ["bench_memory.py"] + (["--heartbeats", "50000"] if args.quick else []),
            ["heartbeat_size.py"] + (["--heartbeats", "100000"] if args.quick else []),
            ["bench_slow_clients.py"] + (["--seconds", "5"] if args.quick else []),
            ["bench_partitions.py"] + (["--day-heartbeats", "1000000", "--batches", "500",
                                        "--rounds", "2", "--row-wise", "50000"]
                                       if args.quick else []),
            ["bench_console.py"]]
    results: list[str] = []
    failed = False
    for script, *options in runs:
        print(f"\n$ python bench/{script} {' '.join(options)}".rstrip(), flush=True)
        process = subprocess.run([sys.executable, str(HERE / script), *options],
                                 stdout=subprocess.PIPE, text=True)
        print(process.stdout, end="", flush=True)
        results += [line for line in process.stdout.splitlines()
                    if line.startswith(("[PASS]", "[FAIL]"))]
        failed |= process.returncode != 0
    print("\nSummary")
    print("\n".join(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
