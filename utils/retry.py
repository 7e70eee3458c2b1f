"""Retry policy: what is transient, how long to wait (tenacity), and brief retries for blips."""
from __future__ import annotations

import time
from typing import Any, Callable, TypeVar

import tenacity
from tenacity import RetryCallState

T = TypeVar("T")

# Full jitter: a random wait between 0 and min(cap, base * 2**attempt).
ALERT_BACKOFF_MAX_SECONDS = 600
ALERT_BACKOFF = tenacity.wait_random_exponential(multiplier=2, max=ALERT_BACKOFF_MAX_SECONDS)
BLIP_BACKOFF = tenacity.wait_random_exponential(multiplier=0.05, max=0.5)


def backoff_seconds(attempt_number: int, retry_after_seconds: float | None = None,
                    wait: Callable[[RetryCallState], float] = ALERT_BACKOFF,
                    cap_seconds: float | None = None) -> float:
    """How long to wait before attempt `attempt_number + 1`: full jitter, never sooner than
    Retry-After, and never longer than `cap_seconds` (a channel's breaker recovery time: an
    alert's own wait never outlasts it, SPEC §6.4a; a longer Retry-After is honoured up to it)."""
    if cap_seconds is None:
        return max(wait(_state(attempt_number)), retry_after_seconds or 0.0)
    capped = tenacity.wait_random_exponential(
        multiplier=2, max=min(cap_seconds, ALERT_BACKOFF_MAX_SECONDS))
    return min(max(capped(_state(attempt_number)), retry_after_seconds or 0.0), cap_seconds)


def call_with_retries(func: Callable[..., T], *args: Any, is_transient: Callable[[BaseException], bool],
                      attempts: int = 3, wait: Callable[[RetryCallState], float] = BLIP_BACKOFF,
                      sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> T:
    """Call `func`; on a transient error, retry briefly with jittered backoff.

    The first attempt runs outside tenacity: a call that succeeds pays nothing for the policy.
    """
    try:
        return func(*args, **kwargs)
    except BaseException as error:
        if attempts <= 1 or not is_transient(error):
            raise
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts - 1), wait=wait, sleep=sleep,
        retry=tenacity.retry_if_exception(is_transient), reraise=True)
    sleep(wait(_state(1)))
    return retrying(func, *args, **kwargs)


def _state(attempt_number: int) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
    state.attempt_number = attempt_number
    return state
