"""Circuit breakers per alert destination: the `circuitbreaker` package, with its traps closed.

What the package gets wrong for us, and what this wrapper does instead:
- no locking, so in half-open every concurrent caller goes through (its issue #61):
  `allow()` lets exactly one probe through at a time;
- an exception outside `expected_exception` counts as a success and resets the count:
  here an error that `is_failure` does not count (a permanent one) neither counts nor resets;
- `with cb:` and `cb.call()` skip the open check: here both check it;
- it reads `time.monotonic()`: here time comes from the injected clock, so the state read by
  health and metrics moves from open to half-open by the clock, not on the next call.
"""
from __future__ import annotations

import datetime as dt
import threading
from typing import Any, Callable

from circuitbreaker import (
    STATE_CLOSED,
    STATE_HALF_OPEN,
    STATE_OPEN,
    CircuitBreaker,
    CircuitBreakerError,
)

__all__ = ["Breaker", "BreakerRegistry", "CircuitBreakerError", "STATE_CLOSED", "STATE_OPEN",
           "STATE_HALF_OPEN"]

STATE_CODES = {STATE_CLOSED: 0, STATE_OPEN: 1, STATE_HALF_OPEN: 2}
FailurePredicate = Callable[[BaseException], bool]


def _any_error(error: BaseException) -> bool:
    return True


class Breaker(CircuitBreaker):
    """A thread-safe breaker driven by an injected clock (seconds as a float)."""

    def __init__(self, name: str, failure_threshold: int, recovery_seconds: float,
                 seconds: Callable[[], float], is_failure: FailurePredicate = _any_error):
        super().__init__(failure_threshold=failure_threshold, recovery_timeout=recovery_seconds,
                         expected_exception=lambda error_type, error: is_failure(error),
                         name=name)
        self._seconds = seconds
        self._lock = threading.Lock()
        self._probing = False
        self._opened = seconds()

    @property
    def open_remaining(self) -> float:
        return self._opened + self._recovery_timeout - self._seconds()

    @property
    def opened_at(self) -> float | None:
        """Clock seconds when the breaker last opened; None while closed."""
        return None if self._state == STATE_CLOSED else self._opened

    @property
    def probing(self) -> bool:
        """A probe is in flight (half-open, its one call reserved)."""
        return self._probing

    def allow(self) -> bool:
        """Reserve one call: always while closed; in half-open, only the single probe."""
        if self._state == STATE_CLOSED:
            return True
        with self._lock:
            if self._state == STATE_CLOSED:
                return True
            if self._probing or self.open_remaining > 0:
                return False
            self._probing = True
            return True

    def record_success(self) -> None:
        if self._state == STATE_CLOSED and self._failure_count == 0:
            return
        with self._lock:
            self.reset()
            self._probing = False

    def record_failure(self, error: BaseException) -> None:
        with self._lock:
            self._last_failure = error
            self._failure_count += 1
            if self._probing or self._failure_count >= self._failure_threshold:
                self._state = STATE_OPEN
                self._opened = self._seconds()
            self._probing = False

    def record_neutral(self) -> None:
        """A permanent error: says nothing about the destination's health."""
        if self._probing:
            with self._lock:
                self._probing = False

    def __enter__(self) -> None:
        if not self.allow():
            raise CircuitBreakerError(self)
        return None

    def __exit__(self, exc_type, exc_value, traceback) -> bool:
        if exc_type is None:
            self.record_success()
        elif self.is_failure(exc_type, exc_value):
            self.record_failure(exc_value)
        else:
            self.record_neutral()
        return False

    def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self:
            return func(*args, **kwargs)

    def _decorate_sync(self, function):
        def wrapper(*args, **kwargs):
            return self.call(function, *args, **kwargs)
        wrapper.__wrapped__ = function
        return wrapper

    def snapshot(self, to_datetime: Callable[[float], dt.datetime]) -> dict[str, Any]:
        state = self.state
        opened_at = self.opened_at
        return {"name": self.name, "state": state, "state_code": STATE_CODES[state],
                "failure_count": self.failure_count,
                "opened_at": to_datetime(opened_at) if opened_at is not None else None}


class BreakerRegistry:
    """One breaker per destination, created on first use; health and metrics read it."""

    def __init__(self, failure_threshold: int, recovery_seconds: float, clock: Any,
                 is_failure: FailurePredicate = _any_error):
        self.failure_threshold = failure_threshold
        self.recovery_seconds = recovery_seconds
        self.is_failure = is_failure
        self._clock = clock
        self._breakers: dict[str, Breaker] = {}
        self._lock = threading.Lock()

    def _seconds(self) -> float:
        return self._clock.now().timestamp()

    def get(self, name: str) -> Breaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.get(name)
                if breaker is None:
                    breaker = Breaker(name, self.failure_threshold, self.recovery_seconds,
                                      self._seconds, self.is_failure)
                    self._breakers[name] = breaker
        return breaker

    def not_closed(self) -> dict[str, Breaker]:
        """The breakers open or half-open now, by name."""
        with self._lock:
            breakers = list(self._breakers.items())
        return {name: breaker for name, breaker in breakers if breaker.state != STATE_CLOSED}

    def snapshot(self) -> list[dict[str, Any]]:
        def to_datetime(seconds: float) -> dt.datetime:
            return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
        return [breaker.snapshot(to_datetime) for _, breaker in sorted(self._breakers.items())]
