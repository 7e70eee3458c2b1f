"""Rate-limit counters in Redis, each process counting a small share of them on its own.

The counters are limits' fixed windows: one Redis key per counter, incremented, given its
window as an expiry when a window's first hit creates it. Two ways to count a request:

- `hit_exact`: every counter of the request in one round trip (one Lua script), refused when a
  counter is over its amount, exactly as `limits` counts;
- `hit`: counted in this process while each counter has room in its *local share* (the larger
  of 1 and 1% of its amount, hits Redis has not heard of yet) and, as far as this process knows,
  below its amount; otherwise `hit_exact`. The hits counted locally reach Redis in one round
  trip per FLUSH_INTERVAL_SECONDS, made by the first request that finds the flush due.

The tolerance this buys, per counter and window: a limit of N never refuses a request before N
were let through, and lets through at most N + P x share, P the number of processes counting
(gunicorn workers over every host). Each process can over-admit once per window: its share,
counted while its view of the count was stale; the hit that fills its share is checked in Redis,
and from then on it knows the count is at the limit. A process that stops receiving requests
keeps up to its share of hits unsent until its next request, which is within the same bound.

While Redis cannot be asked (`hit_offline`), a process counts on from the counts it last heard
from Redis, with no share: it lets a counter through up to the limit less what it last knew,
and sends every hit once Redis answers again.

Hits counted locally for a window that has since ended are dropped, not sent into the next one:
a window's end is known from Redis (PTTL, read just before asking, so never late), and a
request is never refused for hits of an earlier window. (Before Redis has answered for a
counter, its hits go into whichever window Redis has.)
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from limits import RateLimitItem
from limits.storage import RedisStorage

FLUSH_INTERVAL_SECONDS = 0.05
SWEEP_INTERVAL_SECONDS = 10.0
LOCAL_SHARE = 0.01
NEVER_REFUSED = 2 ** 53  # the amount sent with a flush: counted, never refused

# KEYS: the counters in order; ARGV: each one's increment, amount and window in seconds. Adds
# each increment in turn as limits' FixedWindowRateLimiter.hit does (INCRBY, EXPIRE when the
# increment created the key) and stops at the first counter over its amount. Answers that
# counter's position (0 when none refused), then each counted one's count and PTTL.
HIT_IN_ORDER = """
local answer = {0}
for i = 1, #KEYS do
    local increment = tonumber(ARGV[3 * i - 2])
    local count = redis.call("incrby", KEYS[i], increment)
    if count == increment then
        redis.call("expire", KEYS[i], ARGV[3 * i])
    end
    answer[2 * i] = count
    answer[2 * i + 1] = redis.call("pttl", KEYS[i])
    if count > tonumber(ARGV[3 * i - 1]) then
        answer[1] = i
        return answer
    end
end
return answer
"""

Check = tuple[RateLimitItem, str]  # a limit and its counter's Redis key
Refusal = tuple[RateLimitItem, int]  # the limit refused and Retry-After in seconds


class Counter:
    """What this process knows of one counter in its current window."""

    __slots__ = ("window_seconds", "counted", "unsent", "ends_at", "heard")

    def __init__(self, window_seconds: int, now: float) -> None:
        self.window_seconds = window_seconds
        self.counted = 0  # Redis's count when last asked
        self.unsent = 0  # hits let through here since, not yet added in Redis
        # Until Redis answers for it, the window is taken to end one window after its first
        # hit here: counters of ended windows are forgotten even while Redis cannot be asked.
        self.ends_at = now + window_seconds
        self.heard = False

    def learn(self, count: int, pttl_ms: int, asked_at: float) -> None:
        ends_at = asked_at + (pttl_ms / 1000 if pttl_ms >= 0 else self.window_seconds)
        if self.heard and abs(ends_at - self.ends_at) < self.window_seconds / 2:
            # The same window: answers to concurrent requests can arrive out of order, and
            # Redis's count only grows within a window.
            self.counted = max(self.counted, count)
        else:
            self.counted = count
        self.ends_at, self.heard = ends_at, True


def local_share(limit: RateLimitItem) -> int:
    """Hits of one counter a process may let through before Redis counts them."""
    return max(1, int(limit.amount * LOCAL_SHARE))


class RedisCounters:
    """limits' fixed-window counters in one Redis, counted in as few round trips as it can."""

    def __init__(self, storage: RedisStorage, clock: Callable[[], float] = time.monotonic):
        self.storage = storage
        self.clock = clock
        self._hit_in_order = storage.get_connection().register_script(HIT_IN_ORDER)
        self._counters: dict[str, Counter] = {}
        self._unsent_keys: set[str] = set()
        self._lock = threading.Lock()  # no I/O is done under it
        self._flush_due_at = 0.0
        self._sweep_due_at = clock() + SWEEP_INTERVAL_SECONDS
        self._flushing = False

    def key(self, limit: RateLimitItem, *identifiers: str) -> str:
        """The Redis key limits itself gives this counter."""
        return self.storage.prefixed_key(limit.key_for(*identifiers))

    def hit(self, checks: Sequence[Check]) -> Refusal | None:
        """Count a request, here when every counter has room in this process's share."""
        now = self.clock()
        if now >= self._flush_due_at:
            self.flush()
        with self._lock:
            counters = [self._counter(limit, key, now) for limit, key in checks]
            if all(counter.unsent < local_share(limit)
                   and counter.counted + counter.unsent < limit.amount
                   for (limit, _), counter in zip(checks, counters)):
                for (_, key), counter in zip(checks, counters):
                    counter.unsent += 1
                    self._unsent_keys.add(key)
                return None
        return self.hit_exact(checks)

    def hit_exact(self, checks: Sequence[Check]) -> Refusal | None:
        """Count a request in Redis, with this process's unsent hits of its counters."""
        now = self.clock()
        keys = [key for _, key in checks]
        with self._lock:
            counters = [self._counter(limit, key, now) for limit, key in checks]
            unsent = [self._take_unsent(key, counter) for key, counter in zip(keys, counters)]
        arguments = []
        for (limit, _), earlier in zip(checks, unsent):
            arguments += [earlier + 1, limit.amount, limit.get_expiry()]
        try:
            answer = self._hit_in_order(keys, arguments)
        except Exception:
            self._give_back(keys, counters, unsent)
            raise
        refused_at = answer[0]
        counted = refused_at or len(checks)
        self._learn(counters[:counted], answer, now)
        # limits stops at the first counter refused: the ones after it were not counted.
        self._give_back(keys[counted:], counters[counted:], unsent[counted:])
        if refused_at == 0:
            return None
        pttl_ms = answer[2 * refused_at]
        return checks[refused_at - 1][0], max(1, pttl_ms // 1000 + 1)

    def hit_offline(self, checks: Sequence[Check]) -> Refusal | None:
        """Count a request here alone, while Redis cannot be asked: against the counts last
        heard from it, refused hits counted too (as limits counts), all sent once it answers."""
        now = self.clock()
        with self._lock:
            for limit, key in checks:
                counter = self._counter(limit, key, now)
                counter.unsent += 1
                self._unsent_keys.add(key)
                if counter.counted + counter.unsent > limit.amount:
                    return limit, max(1, int(counter.ends_at - now) + 1)
        return None

    def flush(self) -> None:
        """Add every hit counted here to Redis, in one round trip, and learn the counts."""
        now = self.clock()
        with self._lock:
            if self._flushing:
                return
            self._flushing = True
            self._flush_due_at = now + FLUSH_INTERVAL_SECONDS
            if now >= self._sweep_due_at:
                self._sweep(now)
            keys = list(self._unsent_keys)
            counters = [self._counters[key] for key in keys]
            unsent = [self._take_unsent(key, counter) for key, counter in zip(keys, counters)]
        try:
            if keys:
                arguments = []
                for counter, increment in zip(counters, unsent):
                    arguments += [increment, NEVER_REFUSED, counter.window_seconds]
                self._learn(counters, self._hit_in_order(keys, arguments), now)
        except Exception:
            self._give_back(keys, counters, unsent)
            raise
        finally:
            self._flushing = False

    def _counter(self, limit: RateLimitItem, key: str, now: float) -> Counter:
        counter = self._counters.get(key)
        if counter is None or now >= counter.ends_at:
            counter = self._counters[key] = Counter(limit.get_expiry(), now)
            self._unsent_keys.discard(key)  # an ended window's hits are not sent into the next
        return counter

    def _take_unsent(self, key: str, counter: Counter) -> int:
        unsent, counter.unsent = counter.unsent, 0
        self._unsent_keys.discard(key)
        return unsent

    def _learn(self, counters: list[Counter], answer: list[int], asked_at: float) -> None:
        with self._lock:
            for i, counter in enumerate(counters):
                counter.learn(answer[2 * i + 1], answer[2 * i + 2], asked_at)

    def _give_back(self, keys: list[str], counters: list[Counter], unsent: list[int]) -> None:
        """Hits taken to send that Redis did not count: unsent again (unless their window ended)."""
        with self._lock:
            for key, counter, hits in zip(keys, counters, unsent):
                if hits and self._counters.get(key) is counter:
                    counter.unsent += hits
                    self._unsent_keys.add(key)

    def _sweep(self, now: float) -> None:
        """Forget counters whose window has ended (memory only: they reset on read anyway)."""
        self._sweep_due_at = now + SWEEP_INTERVAL_SECONDS
        ended = [key for key, counter in self._counters.items() if now >= counter.ends_at]
        for key in ended:
            del self._counters[key]
            self._unsent_keys.discard(key)
