"""A trial of psycopg 3 for the ingest writer: the same batches written by today's psycopg2 path
and by psycopg 3, side by side on one database, alternating round after round.

    .venv/bin/python bench/bench_psycopg3.py [--batches 1500] [--rounds 5]

Needs psycopg 3 (requirements-dev.txt); the service itself stays on psycopg2. Three cases:

1. plain pings (one statement, WRITE_OK_PINGS), batches of 1, 4 and 16: the store's own
   `_write_ok_pings` (ingest/pg_store.py) on its psycopg2 connection against the same code on a
   psycopg 3 connection (the statement server-side prepared, results in binary);
2. two round trips (lock, then update + insert), batches of 4: the store's own `_write`
   against the same code with psycopg 3 sending each round trip's statements as one pipeline.
   The update is computed from the lock's answer, so a pipeline can overlap only what
   psycopg2's multi-statement strings already send together: BEGIN with the lock, then
   update, insert and COMMIT. Two round trips either way;
3. inserting a batch's heartbeats alone (autocommit), batches of 4 and 64: INSERT ...
   json_to_recordset (INSERT_HEARTBEATS) through psycopg2 and psycopg 3, and psycopg 3's
   COPY heartbeats FROM STDIN (text format).

Prints for each case and driver the medians over rounds, per batch, of wall time, CPU of this
process (the writer's share) and CPU of the PostgreSQL backend serving the connection (from
/proc), then "psycopg3/psycopg2 = x.xx" for each of the three. The psycopg2 connection runs
with the wait callback the app installs (database.install_io_timeout), as the service does.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import random
import re

import psycopg
from bench_ingest import create_applications
from common import _dsn, bench_database, machine, median, per_batch_costs

PLACEHOLDER = re.compile(r"\$(\d+)\b")


class Statements:
    """A psycopg 3 cursor that takes the store's "; "-joined statements and their parameters in
    one list, as psycopg2 does, and sends them one by one (in a pipeline, when one is open,
    without waiting for each answer): those with parameters server-side prepared."""

    def __init__(self, cursor) -> None:
        self.cursor = cursor
        self.fetchone, self.fetchall = cursor.fetchone, cursor.fetchall

    def execute(self, sql: str, parameters=()) -> None:
        parameters = list(parameters)
        for piece in sql.split("; "):
            count = max(map(int, PLACEHOLDER.findall(piece)), default=0)
            arguments, parameters = parameters[:count], parameters[count:]
            self.cursor.execute(piece, arguments or None, prepare=bool(count))


def psycopg3_store(database_url: str):
    """ingest/pg_store.PostgresHeartbeatStore with its code unchanged, on a psycopg 3 connection:
    each statement is sent as its PREPARE's body ($n placeholders, cast to the PREPARE's types)
    and psycopg 3 prepares it (at the protocol level) on first use."""
    from ingest.pg_store import PostgresHeartbeatStore

    @functools.cache
    def native_sql(statement) -> str:
        types, body = statement.prepare.split("(", 1)[1].split(") AS ", 1)
        types = types.split(", ")
        return PLACEHOLDER.sub(lambda m: f"{m[0]}::{types[int(m[1]) - 1]}", body)

    class Psycopg3Store(PostgresHeartbeatStore):
        pipelined = False

        def _sql_and_parameters(self, statement, values):
            return native_sql(statement), values

        def _connected(self):
            if self._connection is None:
                self._connection = psycopg.connect(_dsn(database_url), autocommit=True,
                                                   cursor_factory=psycopg.RawCursor)
            return self._connection

        @contextlib.contextmanager
        def _cursor(self):
            connection = self._connected()
            pipeline = connection.pipeline() if self.pipelined else contextlib.nullcontext()
            # Leaving the pipeline waits for every answer, COMMIT's included.
            with pipeline, connection.cursor(binary=True) as cursor:
                yield Statements(cursor)

        def _write(self, items):
            self.pipelined = True
            try:
                return super()._write(items)
            finally:
                self.pipelined = False

        def close(self) -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    return Psycopg3Store(None)


def backend_pid(store) -> int:
    connection = store._connected()
    if isinstance(connection, psycopg.Connection):
        return connection.info.backend_pid
    return connection.get_backend_pid()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=1500,
                        help="batches per variant and round (a quarter for batches of 64)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"psycopg 3 trial: {machine()}; psycopg {psycopg.__version__} "
          f"({psycopg.pq.__impl__}); {args.batches} batches per variant and round, "
          f"{args.rounds} rounds, alternating", flush=True)
    with bench_database() as database_url:
        uuids = create_applications(database_url, 200)
        from app import create_app
        from database import db
        from ingest.pg_store import (
            HEARTBEAT_COLUMNS,
            INSERT_HEARTBEATS,
            PostgresHeartbeatStore,
            _row,
        )
        from ingest.signals import heartbeat_view, received_signal
        app = create_app({"DATABASE_URL": database_url, "MONITOR_ENABLED": False,
                          "LOG_LEVEL": "WARNING"})
        with app.app_context():
            psycopg2_store = PostgresHeartbeatStore(db.engine)
        psycopg3 = psycopg3_store(database_url)
        stores = {"psycopg2": psycopg2_store, "psycopg3": psycopg3}

        def batch(size: int) -> list:
            now = dt.datetime.now(dt.timezone.utc)
            return [(uuid, received_signal("ok", received_at=now, remote_addr="127.0.0.1",
                                           user_agent="bench", exit_code=None))
                    for uuid in random.sample(uuids, size)]

        for store in stores.values():  # both learn the schedules, prepare, warm up
            store._write(batch(200))
            for _ in range(200):
                assert store._write_ok_pings(batch(4)) is not None
                assert store._write(batch(4)) is not None
        with psycopg2_store._connected().cursor() as cursor:
            cursor.execute("SELECT uuid, id FROM applications")
            ids = dict(cursor.fetchall())
        columns = [name for name, _ in HEARTBEAT_COLUMNS]
        copy_sql = f"COPY heartbeats ({', '.join(columns)}) FROM STDIN"

        def rows(size: int) -> list[dict]:
            return [{**_row(heartbeat_view(uuid, signal)), "application_id": ids[uuid]}
                    for uuid, signal in batch(size)]

        def ok_pings(store):
            def write(items):
                assert store._write_ok_pings(items) is not None  # never the two round trips
            return write

        def insert_json(store):
            connection = store._connected()
            sql, _ = store._sql_and_parameters(INSERT_HEARTBEATS, [None])
            options = {"prepare": True} if store is psycopg3 else {}

            def write(heartbeats):
                with connection.cursor(**{"binary": True} if options else {}) as cursor:
                    cursor.execute(sql, [json.dumps(heartbeats)], **options)
            return write

        def copy(heartbeats):
            with psycopg3._connected().cursor() as cursor, cursor.copy(copy_sql) as out:
                for heartbeat in heartbeats:
                    out.write_row([heartbeat[name] for name in columns])

        # (case, batch size, make a batch, [(variant, driver, write)]); the first is the base.
        cases = [(f"plain pings x{size}", size, batch,
                  [("psycopg2", "psycopg2", ok_pings(psycopg2_store)),
                   ("psycopg3", "psycopg3", ok_pings(psycopg3))]) for size in (1, 4, 16)]
        cases.append(("two round trips x4", 4, batch,
                      [("psycopg2", "psycopg2", psycopg2_store._write),
                       ("psycopg3 pipeline", "psycopg3", psycopg3._write)]))
        cases += [(f"insert heartbeats x{size}", size, rows,
                   [("psycopg2 INSERT json", "psycopg2", insert_json(psycopg2_store)),
                    ("psycopg3 INSERT json", "psycopg3", insert_json(psycopg3)),
                    ("psycopg3 COPY", "psycopg3", copy)]) for size in (4, 64)]
        results = {(case, name): [] for case, _, _, variants in cases for name, _, _ in variants}
        for round_number in range(args.rounds):
            for case, size, make, variants in cases:
                count = args.batches if size <= 16 else max(100, args.batches // 4)
                order = variants if round_number % 2 == 0 else variants[::-1]
                for name, driver, write in order:
                    batches = [make(size) for _ in range(count)]
                    results[case, name].append(
                        per_batch_costs(write, batches, backend_pid(stores[driver])))
        for store in stores.values():
            store.close()
        with app.app_context():
            db.engine.dispose()
    for case, _, _, variants in cases:
        base = None
        for name, _, _ in variants:
            figures = [median([run[n] for run in results[case, name]]) for n in range(3)]
            print(f"  {case:22s} {name:21s} per batch: wall {figures[0]:5.0f} us, client CPU "
                  f"{figures[1]:5.0f} us, backend CPU {figures[2]:5.0f} us", flush=True)
            if base is None:
                base = figures
            else:
                ratios = ", ".join(f"{new / old:.2f} {what}" for new, old, what in
                                   zip(figures, base, ("wall", "client CPU", "backend CPU")))
                print(f"  {case:22s} {name:21s} psycopg3/psycopg2 = {ratios}", flush=True)


if __name__ == "__main__":
    main()
