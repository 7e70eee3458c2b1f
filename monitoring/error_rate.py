"""The service's own error rate: requests and 5xx answers over a sliding window.

Every serving process counts its requests in memory and adds them to its own row of
`request_counts` per time bucket every FLUSH_SECONDS (and before it measures): no database
work on the request path, no contention between workers. The rate sums the buckets of the
window, so every worker, every instance and the monitor see the same numbers. The alert raised
when it is high is operator_alerts.py's.
"""
from __future__ import annotations

import atexit
import dataclasses
import datetime as dt
import logging
import os
import socket
import threading

from flask import Flask
from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from config import Settings
from database import db
from models import RequestCount
from runtime import current_runtime

log = logging.getLogger(__name__)

BUCKET_SECONDS = 10


@dataclasses.dataclass(frozen=True)
class ErrorRate:
    """Requests and errors counted over the window ending at `measured_at`."""

    requests: int
    errors: int
    window_seconds: int
    threshold: float
    min_requests: int
    measured_at: dt.datetime

    @property
    def rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def is_high(self) -> bool:
        """Above the threshold, with enough requests for the rate to mean something."""
        return self.requests >= self.min_requests and self.rate > self.threshold

    def as_dict(self) -> dict:
        return {"requests": self.requests, "errors": self.errors, "rate": round(self.rate, 6),
                "window_seconds": self.window_seconds, "threshold": self.threshold,
                "min_requests": self.min_requests, "high": self.is_high}


def bucket_start(moment: dt.datetime) -> dt.datetime:
    """The start of the BUCKET_SECONDS bucket holding `moment`."""
    epoch = int(moment.timestamp())
    return dt.datetime.fromtimestamp(epoch - epoch % BUCKET_SECONDS, dt.timezone.utc)


def process_source() -> str:
    """Names this serving process: its row in each bucket."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


class RequestCounter:
    """This process's request and error counts per bucket, not yet written to the database."""

    FLUSH_SECONDS = 2.0

    def __init__(self, app: Flask):
        self.app = app
        self._pending: dict[dt.datetime, list[int]] = {}
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._stopped = threading.Event()

    def count(self, now: dt.datetime, is_error: bool) -> None:
        """Add one request (and one error if it was a 5xx); costs a dict update, no I/O."""
        bucket = bucket_start(now)
        with self._lock:
            counts = self._pending.setdefault(bucket, [0, 0])
            counts[0] += 1
            counts[1] += is_error
        if self._flusher is None:
            self._start_flusher()

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher is not None or self._stopped.is_set():
                return
            self._flusher = threading.Thread(target=self._flush_forever, name="hbmon-requests",
                                             daemon=True)
            self._flusher.start()
        atexit.register(self.stop)

    def _flush_forever(self) -> None:
        while not self._stopped.wait(self.FLUSH_SECONDS):
            with self.app.app_context():
                self.flush()

    def stop(self) -> None:
        """Stop the flusher and write what is pending (best effort: counts are not data)."""
        self._stopped.set()
        flusher = self._flusher
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join(5.0)
        with self.app.app_context():
            self.flush()

    def flush(self) -> None:
        """Write pending counts; on failure keep them for the next flush. Never raises."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            _add_counts(pending)
        except Exception:  # the database may be down; the counts wait
            log.debug("could not write request counts", exc_info=True)
            with self._lock:
                for bucket, (requests, errors) in pending.items():
                    counts = self._pending.setdefault(bucket, [0, 0])
                    counts[0] += requests
                    counts[1] += errors


def _add_counts(pending: dict[dt.datetime, list[int]]) -> None:
    module = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    source = process_source()
    with db.engine.begin() as connection:
        for bucket, (requests, errors) in sorted(pending.items()):
            statement = module.insert(RequestCount).values(
                bucket_start=bucket, source=source, requests=requests, errors=errors)
            connection.execute(statement.on_conflict_do_update(
                index_elements=["bucket_start", "source"],
                set_={"requests": RequestCount.requests + requests,
                      "errors": RequestCount.errors + errors}))


def current_error_rate(now: dt.datetime, settings: Settings | None = None) -> ErrorRate:
    """The error rate including this process's counts not yet flushed."""
    current_runtime().request_counter.flush()
    return measure_error_rate(now, settings)


def measure_error_rate(now: dt.datetime, settings: Settings | None = None) -> ErrorRate:
    """The error rate over the window ending at `now`."""
    settings = settings or current_runtime().settings
    window_start = bucket_start(now - dt.timedelta(seconds=settings.ERROR_RATE_WINDOW_SECONDS))
    requests, errors = db.session.execute(
        select(func.coalesce(func.sum(RequestCount.requests), 0),
               func.coalesce(func.sum(RequestCount.errors), 0))
        .where(RequestCount.bucket_start > window_start, RequestCount.bucket_start <= now)
    ).one()
    return ErrorRate(requests=int(requests), errors=int(errors),
                     window_seconds=settings.ERROR_RATE_WINDOW_SECONDS,
                     threshold=settings.ERROR_RATE_THRESHOLD,
                     min_requests=settings.ERROR_RATE_MIN_REQUESTS, measured_at=now)


def prune_request_counts(now: dt.datetime, settings: Settings | None = None) -> int:
    """Delete buckets that have left every window; returns how many rows went."""
    settings = settings or current_runtime().settings
    oldest_kept = bucket_start(now - dt.timedelta(seconds=2 * settings.ERROR_RATE_WINDOW_SECONDS))
    result = db.session.execute(delete(RequestCount).where(RequestCount.bucket_start < oldest_kept))
    db.session.commit()
    return result.rowcount or 0
