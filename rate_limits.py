"""Rate limits (§7), counted by `limits` in RATE_LIMIT_STORAGE_URL.

- heartbeats: PING_RATE_LIMIT per application UUID *and* client address (someone else flooding
  a UUID cannot get its real job refused), and PING_CLIENT_RATE_LIMIT per client address over
  all UUIDs (a client spraying random UUIDs);
- the management APIs (ours and Healthchecks'): API_RATE_LIMIT per API key (per client address
  before a key is known, or when it is sent in a JSON body);
- dashboard sign-in: LOGIN_RATE_LIMIT per client address, against key guessing.

Fixed windows: one counter per key and window, cheap in memory and in Redis. `memory://`
counts in each process; with several workers or instances use a shared store such as
`redis://127.0.0.1:6379/0`. When that store is unreachable, or does not answer within
STORE_TIMEOUT_SECONDS, requests are counted in each process for STORE_RETRY_SECONDS (on from
the counts last heard from Redis), then the store is tried again: a monitor must not refuse
heartbeats, nor answer them slowly, because its rate-limit store is down or hung. Over a
limit: 429 `RATE_LIMITED` with `Retry-After`; other answers carry no rate-limit headers.

`limits` is used directly rather than through Flask-Limiter: heartbeats are the hot path, and
Flask-Limiter's per-request resolution of decorated limits cost more than the rest of a ping.
With Redis (redis_counters.py), a request's counters (a heartbeat has two) are counted in one
round trip by one Lua script, under the same keys, windows and rules as limits' fixed windows;
heartbeats, the hot path, are first counted in each process within a small local share, sent
to Redis in batches: a limit of N never refuses before N and lets through at most N plus the
larger of 1 and 1% of N per serving process.
"""
from __future__ import annotations

import logging
import threading
import time

from flask import Flask, request
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, RedisStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from redis.backoff import NoBackoff
from redis.retry import Retry

from auth import key_prefix, presented_key
from config import Settings
from exceptions import RateLimited
from ingest.signals import ping_rate_limit_key
from redis_counters import RedisCounters

log = logging.getLogger(__name__)

HEARTBEAT_ENDPOINTS = {"ping.ping", "ping.slug_ping", "api.create_heartbeat"}
LOGIN_ENDPOINT = "dashboard.login_submit"
STORE_RETRY_SECONDS = 5.0
STORE_TIMEOUT_SECONDS = 0.08
NAMESPACE = "hbmon"

class SweptMemoryStorage(MemoryStorage):
    """limits' in-process counters, with expired ones swept inline at most once a second.

    MemoryStorage sweeps from a timer thread it starts anew, 10 ms after any hit that finds
    none running: under steady load, a hundred short-lived threads a second per process.
    Counters expire on read either way; the sweep only bounds memory.
    """

    SWEEP_INTERVAL_SECONDS = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._swept_at = time.monotonic()
        self._sweep_lock = threading.Lock()

    def _MemoryStorage__schedule_expiry(self) -> None:  # replaces the timer thread
        now = time.monotonic()
        if now - self._swept_at >= self.SWEEP_INTERVAL_SECONDS and \
                self._sweep_lock.acquire(blocking=False):
            try:
                self._swept_at = now
                self._MemoryStorage__expire_events()
            finally:
                self._sweep_lock.release()


def counter_storage(url: str):
    """The store a storage URL names; `memory://` is counted in this process.

    A Redis store gets short socket timeouts and no retries of its own: a store that accepts
    connections and never answers, or sits behind a cut link, costs a request at most
    STORE_TIMEOUT_SECONDS (connect, then one read) before the request is let through
    (fail-open, see hit()). A `socket_timeout` or `socket_connect_timeout` in the URL's query
    wins.
    """
    if url.startswith("memory://"):
        return SweptMemoryStorage()
    if url.startswith(("redis://", "rediss://", "redis+unix://")):
        return storage_from_string(url, socket_timeout=STORE_TIMEOUT_SECONDS / 2,
                                   socket_connect_timeout=STORE_TIMEOUT_SECONDS / 2,
                                   retry=Retry(NoBackoff(), 0), health_check_interval=0)
    return storage_from_string(url)


def is_management_api(blueprint: str | None) -> bool:
    """Ours under /api/v1, or Healthchecks' (healthchecks_api.py): limited per API key."""
    return blueprint == "api" or (blueprint or "").startswith("healthchecks_")


def client_address() -> str:
    return request.remote_addr or "unknown"


def api_key_identity() -> str:
    """The key's public prefix (never the key), or the client address without a key."""
    prefix = key_prefix(presented_key() or "")
    return f"key:{prefix[:16]}" if prefix else f"addr:{client_address()}"


class RateLimits:
    """The service's limits and the counters behind them."""

    def __init__(self, settings: Settings) -> None:
        self.heartbeat_per_uuid = parse(settings.PING_RATE_LIMIT)
        self.heartbeat_per_client = parse(settings.PING_CLIENT_RATE_LIMIT)
        self.api_per_key = parse(settings.API_RATE_LIMIT)
        self.login_per_client = parse(settings.LOGIN_RATE_LIMIT)
        storage = counter_storage(settings.RATE_LIMIT_STORAGE_URL)
        self.store = FixedWindowRateLimiter(storage)
        self.fallback = FixedWindowRateLimiter(SweptMemoryStorage())
        self._store_down_until = 0.0
        self.redis = RedisCounters(storage) if isinstance(storage, RedisStorage) else None

    def check_request(self) -> None:
        """Count the current request against the limits of its endpoint."""
        endpoint = request.endpoint
        if endpoint in HEARTBEAT_ENDPOINTS:
            self.check_heartbeat(ping_rate_limit_key(request.view_args or {}), client_address())
        elif is_management_api(request.blueprint):
            self.hit((self.api_per_key, "api", api_key_identity()))
        elif endpoint == LOGIN_ENDPOINT:
            self.hit((self.login_per_client, "login", client_address()))

    def check_heartbeat(self, uuid: str, client: str) -> None:
        """Count a heartbeat for `uuid` (as written in the URL) from `client`.

        With Redis, within the tolerance of a local share (redis_counters.py): heartbeats are
        the hot path, and a round trip each cost a fifth of the service's throughput.
        """
        self.hit((self.heartbeat_per_client, "ping-client", client),
                 (self.heartbeat_per_uuid, "ping-uuid", f"{uuid.lower()[:64]}@{client}"),
                 exact=False)

    def hit(self, *checks: tuple[RateLimitItem, str, str], exact: bool = True) -> None:
        """Count one request against each (limit, scope, key) in turn; RateLimited when over."""
        if time.monotonic() < self._store_down_until:
            refused = self._hit_in_process(checks)
        else:
            try:
                refused = self._hit_store(checks, exact)
            except Exception as error:  # the store is down: count in this process meanwhile
                log.warning("rate limit store unreachable (%s); counting in this process for "
                            "%g s", type(error).__name__, STORE_RETRY_SECONDS)
                self._store_down_until = time.monotonic() + STORE_RETRY_SECONDS
                refused = self._hit_in_process(checks)
        if refused is not None:
            limit, retry_after = refused
            raise RateLimited(f"Limit: {limit}.", retry_after_seconds=retry_after)

    def _hit_store(self, checks: tuple[tuple[RateLimitItem, str, str], ...], exact: bool):
        """(the limit refused, Retry-After) or None."""
        if self.redis is None:
            return self._hit_limiter(self.store, checks)
        keyed = self._redis_keys(checks)
        return self.redis.hit_exact(keyed) if exact else self.redis.hit(keyed)

    def _hit_in_process(self, checks: tuple[tuple[RateLimitItem, str, str], ...]):
        """While the store cannot be asked: from Redis's counts as last heard, if Redis."""
        if self.redis is None:
            return self._hit_limiter(self.fallback, checks)
        return self.redis.hit_offline(self._redis_keys(checks))

    def _redis_keys(self, checks: tuple[tuple[RateLimitItem, str, str], ...]):
        return [(limit, self.redis.key(limit, NAMESPACE, scope, key))
                for limit, scope, key in checks]

    @staticmethod
    def _hit_limiter(limiter: FixedWindowRateLimiter,
                     checks: tuple[tuple[RateLimitItem, str, str], ...]):
        """One call per counter; (the limit refused, Retry-After) or None."""
        for limit, scope, key in checks:
            if not limiter.hit(limit, NAMESPACE, scope, key):
                reset_at = limiter.get_window_stats(limit, NAMESPACE, scope, key).reset_time
                return limit, max(1, int(reset_at - time.time()) + 1)
        return None


def init_rate_limits(app: Flask, settings: Settings) -> RateLimits:
    """Check every request against its endpoint's limits, before its view runs."""
    rate_limits = RateLimits(settings)
    app.before_request(rate_limits.check_request)
    return rate_limits
