"""Clocks: the only place the service reads the time, so tests can drive it."""
from __future__ import annotations

import datetime as dt
import threading
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    """Wall-clock time, timezone-aware UTC."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)


class ManualClock:
    """A clock that moves only when told to; for tests."""

    def __init__(self, start: dt.datetime | None = None):
        self._now = start or dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float = 0, **kwargs) -> dt.datetime:
        with self._lock:
            self._now += dt.timedelta(seconds=seconds, **kwargs)
            return self._now

    def set(self, moment: dt.datetime) -> None:
        with self._lock:
            self._now = moment


class FileClock:
    """Reads an ISO timestamp from a file on every call; lets a test drive another process's time."""

    def __init__(self, path: str):
        self.path = path

    def now(self) -> dt.datetime:
        with open(self.path) as handle:
            return dt.datetime.fromisoformat(handle.read().strip())


def utc_iso(moment: dt.datetime | None) -> str | None:
    """Render a UTC datetime as ISO 8601 with a Z suffix."""
    if moment is None:
        return None
    return moment.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
