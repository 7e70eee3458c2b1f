"""The ingest writer: group commit when the database answers, the local spool when it does not.

Requests hand their heartbeat to one writer thread per process, which waits
INGEST_BATCH_WINDOW_SECONDS for more, writes everything that arrived in one transaction (on
PostgreSQL in one or two round trips, heartbeat_store.py) and answers each request once its
heartbeat is committed: it wakes the batch's first request, and each request woken wakes the
next (a relay), so they do not all wake at once to queue for the GIL. If the database fails,
or does not answer within INGEST_TIMEOUT_SECONDS, the request appends its heartbeat to the
spool (fsync'd) and is answered as accepted. Each heartbeat carries a UUID from the moment it is
received, so a heartbeat both committed late and spooled is stored once on replay.
"""
from __future__ import annotations

import atexit
import dataclasses
import logging
import threading
from collections import Counter, deque
from typing import Any

from flask import Flask

from database import db, is_connection_error
from exceptions import ServiceUnavailable
from ingest.orm_store import write_heartbeats
from ingest.pg_store import PostgresHeartbeatStore
from ingest.signals import Signal, heartbeat_view
from monitoring import metrics
from spool import Spool, SpoolFull
from utils.circuit_breaker import Breaker
from utils.retry import call_with_retries

log = logging.getLogger(__name__)

MAX_BATCH = 256


@dataclasses.dataclass
class Accepted:
    """What a request learns about its heartbeat."""

    heartbeat: dict[str, Any]
    spooled: bool


@dataclasses.dataclass
class _Pending:
    application_uuid: str
    signal: Signal
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    result: dict[str, Any] | None = None
    error: BaseException | None = None
    next: _Pending | None = None  # the batch's next request, woken by this one
    gave_up: bool = False  # no longer waiting: the relay passes it by


class HeartbeatWriter:
    """The per-process ingest path: group commit, falling back to the spool."""

    def __init__(self, app: Flask, spool: Spool, db_breaker: Breaker, timeout_seconds: float,
                 batch_window_seconds: float = 0.0):
        self.app = app
        self.spool = spool
        self.db_breaker = db_breaker
        self.timeout_seconds = timeout_seconds
        self.batch_window_seconds = batch_window_seconds
        self._queue: deque[_Pending] = deque()
        self._wakeup = threading.Condition()
        self._relay = threading.Lock()  # orders a wake-up against a request giving up
        self._thread: threading.Thread | None = None
        self._stopping = False
        # The writer thread's own, once known: False where the database is not PostgreSQL.
        self._store: PostgresHeartbeatStore | bool | None = None

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._wakeup:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="hbmon-ingest",
                                                    daemon=True)
                    self._thread.start()
                    atexit.register(self.stop)  # commit what is queued before the process ends

    def accept(self, application_uuid: str, signal: Signal) -> Accepted:
        """Store the heartbeat durably, in the database or the spool; 404 for unknown UUIDs."""
        if self.db_breaker.allow():
            self._ensure_started()
            pending = _Pending(application_uuid, signal)
            with self._wakeup:
                self._queue.append(pending)
                if len(self._queue) == 1:  # later arrivals find the writer awake or gathering
                    self._wakeup.notify()
            if not pending.done.wait(self.timeout_seconds):
                with self._relay:
                    pending.gave_up = not pending.done.is_set()
            if not pending.gave_up:
                self._wake(pending.next)
                if pending.error is None:
                    return Accepted(pending.result, spooled=False)
                if not is_connection_error(pending.error):
                    raise pending.error  # unknown UUID, or a heartbeat no database would take
        return Accepted(self.spool_heartbeat(application_uuid, signal), spooled=True)

    def _wake(self, pending: _Pending | None) -> None:
        """Wake `pending`, or the first one after it still waiting."""
        with self._relay:
            while pending is not None and pending.gave_up:
                pending = pending.next
            if pending is not None:
                pending.done.set()

    def spool_heartbeat(self, application_uuid: str | None, signal: Signal,
                        **route: str) -> dict[str, Any]:
        """Append the heartbeat to the spool; `route` names a slug ping's application instead
        of its UUID (ingest/slug_routes.py), to be resolved on replay."""
        view = heartbeat_view(application_uuid, signal)
        record = {**view, "received_at": signal.received_at.isoformat(), **route}
        try:
            self.spool.append(record)
        except SpoolFull:
            raise ServiceUnavailable("The database is unavailable and the local spool is full.")
        metrics.HEARTBEATS_SPOOLED.inc()
        return view

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._queue and not self._stopping:
                    self._wakeup.wait(1.0)
                if self._stopping and not self._queue:
                    if self._store:
                        self._store.close()
                    return
                if self.batch_window_seconds and not self._stopping:
                    # Let the heartbeats of concurrent requests join this one: a batch costs
                    # the database about as much for ten heartbeats as for one.
                    self._wakeup.wait(self.batch_window_seconds)
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            self._write(batch)

    def _write(self, batch: list[_Pending]) -> None:
        items = [(pending.application_uuid, pending.signal) for pending in batch]
        tries = 0

        def store() -> list[Any]:
            nonlocal tries
            tries += 1
            # A retry follows a lost connection, which may have lost only the answer to a
            # COMMIT that took effect: like a replay, it skips heartbeats already stored.
            return self.store_batch(items, replay=tries > 1)

        try:
            # A dropped connection is retried once at once: a blip is not an outage.
            results = call_with_retries(store, is_transient=is_connection_error, attempts=2)
            self.db_breaker.record_success()
        except Exception as error:
            if is_connection_error(error):
                self.db_breaker.record_failure(error)
                for pending in batch:  # each request spools its own heartbeat
                    pending.error = error
                self._answer(batch)
                return
            # One bad heartbeat must not take its batch down with it: write them one by one,
            # so only the bad one fails (and is answered with an error, not spooled, since it
            # could never be stored).
            log.exception("heartbeat batch failed; writing its heartbeats one by one")
            results = [self._write_one(item) for item in items]
        stored: Counter[str] = Counter()
        for pending, result in zip(batch, results):
            if isinstance(result, BaseException):
                pending.error = result
            else:
                pending.result = result
                stored[pending.signal.kind] += 1
        self._answer(batch)
        for kind, count in stored.items():
            metrics.HEARTBEATS.labels(kind=kind).inc(count)

    def _answer(self, batch: list[_Pending]) -> None:
        """Start the relay: the first request woken wakes the next, and so on. Woken all at
        once, a batch's requests queued for the GIL together, which cost each one several
        thread switches (BENCHMARKS.md §1)."""
        for pending, following in zip(batch, batch[1:]):
            pending.next = following
        self._wake(batch[0])

    def store_batch(self, items: list[tuple[str, Signal]], replay: bool = False) -> list[Any]:
        """On PostgreSQL, the one- or two-round-trip path first; the ORM path for the rest (an
        incident opens or resolves in the batch, a replay, SQLite)."""
        if self._store is None:
            with self.app.app_context():
                if db.engine.dialect.name == "postgresql":
                    self._store = PostgresHeartbeatStore(db.engine)
                else:
                    self._store = False
        results = self._store.write(items) if self._store and not replay else None
        if results is not None:
            return results
        with self.app.app_context():
            return write_heartbeats(items, replay=replay)

    def _write_one(self, item: tuple[str, Signal]) -> Any:
        try:
            return self.store_batch([item])[0]
        except Exception as error:
            return error

    def stop(self, timeout_seconds: float = 10.0) -> None:
        """Finish what is queued, then stop."""
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_seconds)
