"""Disk per stored heartbeat on PostgreSQL: the table and each of its indexes (informational).

Heartbeats as a `curl` ping stores them (no body; address and User-Agent kept), arriving a few
milliseconds apart, interleaved over 1,000 applications, then VACUUM ANALYZE. What a day of
pings costs on disk follows: bytes per heartbeat x pings per second x 86,400.

    .venv/bin/python bench/heartbeat_size.py [--heartbeats 1000000]
"""
from __future__ import annotations

import argparse
import contextlib

from common import bench_database, connect, machine

APPLICATIONS = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--heartbeats", type=int, default=1_000_000)
    count = parser.parse_args().heartbeats
    print(machine())
    with bench_database() as url, contextlib.closing(connect(url)) as connection, \
            connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO applications (uuid, name, description, timezone, period_seconds,"
            " grace_seconds, failure_threshold, consecutive_failures, status, created_at,"
            " updated_at) SELECT gen_random_uuid(), 'job-' || n, '', 'UTC', 60, 60, 1, 0, 'up',"
            " now(), now() FROM generate_series(1, %s) AS n", (APPLICATIONS,))
        cursor.execute(
            "INSERT INTO heartbeats (uuid, application_id, kind, message, source, remote_addr,"
            " user_agent, received_at) SELECT gen_random_uuid(), 1 + n %% %s, 'ok', '', 'ping',"
            " '203.0.113.7', 'curl/8.5.0', timestamp '2030-01-01' + n * interval '5 ms'"
            " FROM generate_series(1, %s) AS n", (APPLICATIONS, count))
        cursor.execute("VACUUM ANALYZE heartbeats")
        # Partitioned (migration 0011): the sizes are the partitions' and their indexes'.
        cursor.execute("SELECT sum(pg_relation_size(relid))::bigint,"
                       " sum(pg_total_relation_size(relid))::bigint"
                       " FROM pg_partition_tree('heartbeats') WHERE isleaf")
        table, total = cursor.fetchone()
        cursor.execute("SELECT indexrelid::regclass::text, (SELECT sum(pg_relation_size(relid))"
                       " FROM pg_partition_tree(indexrelid) WHERE isleaf)::bigint"
                       " FROM pg_index WHERE indrelid = 'heartbeats'::regclass ORDER BY 1")
        indexes = cursor.fetchall()
    print(f"{count:,} heartbeats: table {table / count:.0f} B each, "
          + ", ".join(f"{name} {size / count:.0f} B" for name, size in indexes)
          + f"; in all (with free-space and visibility maps) {total / count:.0f} B each")
    for pings_per_second in (10, 100, 1000):
        rows = pings_per_second * 86400
        print(f"  {pings_per_second:>5} pings/s: {rows:>11,} heartbeats a day, "
              f"{rows * total / count / 1e9:6.2f} GB a day, "
              f"{30 * rows * total / count / 1e9:7.1f} GB kept at 30 days' retention")


if __name__ == "__main__":
    main()
