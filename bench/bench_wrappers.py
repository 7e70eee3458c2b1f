"""Target 4: what our retry + breaker wrappers add to a call that succeeds at its first attempt.

Everything is timed in this process, interleaved, best of several repeats: the bare
`circuitbreaker` decorator is the baseline; tenacity and an open-breaker rejection are shown
for reference. Reading a breaker's state never raises and must cost <= 1 us.
"""
from __future__ import annotations

import sys
import timeit

import tenacity
from circuitbreaker import CircuitBreakerError, circuit

from common import machine, report
from transports import DeliveryError, is_breaker_failure, transient
from utils.circuit_breaker import Breaker
from utils.retry import call_with_retries

REPEATS = 7


def succeed() -> int:
    return 1


def fail() -> int:
    raise transient("down")


def is_transient(error: BaseException) -> bool:
    return is_breaker_failure(error)


def main() -> bool:
    seconds = lambda: 1000.0  # noqa: E731  (a clock that stands still)
    breaker = Breaker("bench", failure_threshold=5, recovery_seconds=30, seconds=seconds,
                      is_failure=is_breaker_failure)
    open_breaker = Breaker("bench-open", failure_threshold=1, recovery_seconds=30,
                           seconds=seconds, is_failure=is_breaker_failure)
    open_breaker.record_failure(transient("down"))
    package_breaker = circuit(failure_threshold=5, recovery_timeout=30,
                              expected_exception=DeliveryError)
    package_decorated = package_breaker(succeed)
    package_open = circuit(failure_threshold=1, recovery_timeout=30,
                           expected_exception=DeliveryError)(fail)
    try:
        package_open()
    except DeliveryError:
        pass
    ours_decorated = breaker(succeed)
    tenacity_decorated = tenacity.retry(stop=tenacity.stop_after_attempt(3),
                                        retry=tenacity.retry_if_exception(is_transient))(succeed)

    def package_rejection() -> None:
        try:
            package_open()
        except CircuitBreakerError:
            pass

    cases = {
        "bare function": succeed,
        "circuitbreaker decorator (baseline)": package_decorated,
        "our Breaker decorator": ours_decorated,
        "retry + breaker: call_with_retries(breaker.call, f)":
            lambda: call_with_retries(breaker.call, succeed, is_transient=is_transient),
        "tenacity @retry (reference)": tenacity_decorated,
        "circuitbreaker open rejection, raise + catch (reference)": package_rejection,
        "breaker.state, closed": lambda: breaker.state,
        "breaker.state, open": lambda: open_breaker.state,
        "breaker.allow(), open": open_breaker.allow,
    }
    timers = {name: timeit.Timer(function) for name, function in cases.items()}
    empty = timeit.Timer(lambda: None)
    best = {name: float("inf") for name in cases}
    best_empty = float("inf")
    number = 100_000
    for _ in range(REPEATS):  # interleaved: every case in each repeat
        best_empty = min(best_empty, empty.timeit(number) / number)
        for name, timer in timers.items():
            best[name] = min(best[name], timer.timeit(number) / number)
    print(f"wrappers: {machine()}; best of {REPEATS} x {number} calls each, interleaved; "
          f"the lambda-call overhead ({best_empty * 1e6:.2f} us) is subtracted for the lambdas")
    cost = {}
    for name, function in cases.items():
        value = best[name] - (best_empty if getattr(function, "__name__", "") == "<lambda>"
                              else 0.0)
        cost[name] = value * 1e6
        print(f"  {name:60s} {cost[name]:7.2f} us")
    baseline = cost["circuitbreaker decorator (baseline)"]
    combined = cost["retry + breaker: call_with_retries(breaker.call, f)"]
    passed = report("wrappers first attempt",
                    f"{combined:.2f} us vs baseline {baseline:.2f} us: +{combined - baseline:.2f} us,"
                    f" ratio {combined / baseline:.2f} (target <= +2 us)", combined - baseline <= 2.0)
    state_cost = max(cost["breaker.state, closed"], cost["breaker.state, open"])
    passed &= report("breaker state read",
                     f"{state_cost:.2f} us, ratio to baseline {state_cost / baseline:.2f}, "
                     "no exception (target <= 1 us)", state_cost <= 1.0)
    return passed


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
