"""utils/circuit_breaker.py and utils/retry.py: the traps of the libraries, closed."""
from __future__ import annotations

import threading

import pytest

from transports import DeliveryError, is_breaker_failure, transient
from utils.circuit_breaker import Breaker, CircuitBreakerError
from utils.retry import backoff_seconds, call_with_retries


class Seconds:
    def __init__(self):
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


@pytest.fixture
def seconds():
    return Seconds()


@pytest.fixture
def breaker(seconds):
    return Breaker("test", failure_threshold=3, recovery_seconds=30, seconds=seconds,
                   is_failure=is_breaker_failure)


def fail():
    raise transient("boom")


def permanent():
    raise ValueError("bad request")


def test_opens_after_threshold_consecutive_failures(breaker):
    for _ in range(2):
        with pytest.raises(DeliveryError):
            breaker.call(fail)
    assert breaker.state == "closed"
    with pytest.raises(DeliveryError):
        breaker.call(fail)
    assert breaker.state == "open"
    with pytest.raises(CircuitBreakerError):
        breaker.call(lambda: "never called")


def test_state_turns_half_open_by_the_clock_without_a_call(breaker, seconds):
    for _ in range(3):
        with pytest.raises(DeliveryError):
            breaker.call(fail)
    seconds.value += 29.9
    assert breaker.state == "open"
    seconds.value += 0.2
    assert breaker.state == "half_open"


def test_half_open_lets_exactly_one_probe_through_concurrently(breaker, seconds):
    for _ in range(3):
        with pytest.raises(DeliveryError):
            breaker.call(fail)
    seconds.value += 31
    entered, release = [], threading.Event()
    results = []

    def probe():
        entered.append(1)
        release.wait(5)
        return "ok"

    def caller():
        try:
            results.append(breaker.call(probe))
        except CircuitBreakerError:
            results.append("rejected")

    threads = [threading.Thread(target=caller) for _ in range(10)]
    for thread in threads:
        thread.start()
    for _ in range(200):
        if len([r for r in results if r == "rejected"]) == 9:
            break
        threading.Event().wait(0.01)
    release.set()
    for thread in threads:
        thread.join()
    assert len(entered) == 1
    assert sorted(results) == ["ok"] + ["rejected"] * 9
    assert breaker.state == "closed"


def test_failed_probe_reopens_for_a_full_recovery_period(breaker, seconds):
    for _ in range(3):
        with pytest.raises(DeliveryError):
            breaker.call(fail)
    seconds.value += 31
    with pytest.raises(DeliveryError):
        breaker.call(fail)
    assert breaker.state == "open"
    seconds.value += 29
    assert breaker.state == "open"


def test_permanent_error_neither_counts_nor_resets(breaker):
    for _ in range(2):
        with pytest.raises(DeliveryError):
            breaker.call(fail)
    for _ in range(5):
        with pytest.raises(ValueError):
            breaker.call(permanent)
    assert breaker.failure_count == 2
    with pytest.raises(DeliveryError):
        breaker.call(fail)
    assert breaker.state == "open"


def test_with_statement_checks_the_open_state(breaker):
    for _ in range(3):
        with pytest.raises(DeliveryError):
            breaker.call(fail)
    ran = []
    with pytest.raises(CircuitBreakerError):
        with breaker:
            ran.append(1)
    assert ran == []


def test_decorator_goes_through_the_same_checks(breaker):
    @breaker
    def flaky():
        raise transient("down")

    for _ in range(3):
        with pytest.raises(DeliveryError):
            flaky()
    with pytest.raises(CircuitBreakerError):
        flaky()


def test_success_resets_the_failure_count(breaker):
    with pytest.raises(DeliveryError):
        breaker.call(fail)
    assert breaker.call(lambda: 42) == 42
    assert breaker.failure_count == 0


def test_backoff_is_full_jitter_within_the_exponential_cap_and_honors_retry_after():
    for attempt in range(1, 8):
        waits = [backoff_seconds(attempt) for _ in range(200)]
        cap = min(600, 2 * 2 ** (attempt - 1))
        assert all(0 <= wait <= cap for wait in waits)
        assert max(waits) > cap / 2  # spread over the range, not a fixed delay
    assert backoff_seconds(1, retry_after_seconds=120) >= 120


def test_call_with_retries_retries_transient_errors_only():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("blip")
        return "ok"

    result = call_with_retries(flaky, is_transient=lambda e: isinstance(e, ConnectionError),
                               attempts=3, sleep=sleeps.append)
    assert result == "ok" and len(calls) == 3 and len(sleeps) == 2

    calls.clear()

    def broken():
        calls.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        call_with_retries(broken, is_transient=lambda e: isinstance(e, ConnectionError),
                          attempts=3, sleep=sleeps.append)
    assert len(calls) == 1


def test_call_with_retries_gives_up_after_its_attempts():
    calls = []

    def down():
        calls.append(1)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        call_with_retries(down, is_transient=lambda e: True, attempts=3, sleep=lambda s: None)
    assert len(calls) == 3


def test_backoff_is_capped_at_the_breaker_recovery_time_retry_after_included():
    waits = [backoff_seconds(attempt, cap_seconds=30) for attempt in range(1, 20)
             for _ in range(20)]
    assert all(0 <= wait <= 30 for wait in waits) and max(waits) > 15
    assert backoff_seconds(1, retry_after_seconds=20, cap_seconds=30) >= 20
    assert backoff_seconds(1, retry_after_seconds=3600, cap_seconds=30) == 30
