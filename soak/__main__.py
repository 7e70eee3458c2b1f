"""`python -m soak [--minutes N] [--short] [--seed N]`: exits 0 when every invariant holds."""
from __future__ import annotations

import argparse
import os
import random
import sys

from soak.runner import Options, run

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=5.0,
                        help="minutes of load under faults (default 5)")
    parser.add_argument("--short", action="store_true",
                        help="a smoke run: 1.5 minutes, every fault kind once, closer together")
    parser.add_argument("--seed", type=int, help="the fault schedule's seed (default: random)")
    parser.add_argument("--applications", type=int, default=200)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--database-url", default=os.environ.get(
        "TEST_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="a PostgreSQL server where the soak may create and drop its database "
             "(default: TEST_DATABASE_URL, else the local server)")
    parser.add_argument("--keep-database", action="store_true",
                        help="leave the soak's database for inspection")
    arguments = parser.parse_args()
    options = Options(
        minutes=1.5 if arguments.short else arguments.minutes,
        seed=arguments.seed if arguments.seed is not None else random.randrange(10**6),
        applications=arguments.applications, workers=arguments.workers,
        database_url=arguments.database_url,
        gap_seconds=(1.0, 3.0) if arguments.short else (3.0, 8.0),
        keep_database=arguments.keep_database)
    return 0 if run(options) else 1


if __name__ == "__main__":
    sys.exit(main())
