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
STORE_TIMEOUT_SECONDS, requests are let through and counted per process for
STORE_RETRY_SECONDS, then the store is tried again: a monitor must not refuse heartbeats, nor
answer them slowly, because its rate-limit store is down or hung. Over a limit: 429
`RATE_LIMITED` with `Retry-After`; other answers carry no rate-limit headers.

`limits` is used directly rather than through Flask-Limiter: heartbeats are the hot path, and
Flask-Limiter's per-request resolution of decorated limits cost more than the rest of a ping.
"""
from __future__ import annotations

import logging
import threading
import time

from flask import Flask, request
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from redis.backoff import NoBackoff
from redis.retry import Retry

from auth import key_prefix, presented_key
from config import Settings
from exceptions import RateLimited
from ingest.signals import ping_rate_limit_key

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
        self.store = FixedWindowRateLimiter(counter_storage(settings.RATE_LIMIT_STORAGE_URL))
        self.fallback = FixedWindowRateLimiter(SweptMemoryStorage())
        self._store_down_until = 0.0

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
        """Count a heartbeat for `uuid` (as written in the URL) from `client`."""
        self.hit((self.heartbeat_per_client, "ping-client", client),
                 (self.heartbeat_per_uuid, "ping-uuid", f"{uuid.lower()[:64]}@{client}"))

    def hit(self, *checks: tuple[RateLimitItem, str, str]) -> None:
        """Count one request against each (limit, scope, key) in turn; RateLimited when over."""
        limiter = self.store if time.monotonic() >= self._store_down_until else self.fallback
        try:
            refused = self._first_refused(limiter, checks)
        except Exception:  # the shared store is down: count in this process meanwhile
            log.warning("rate limit store unreachable; counting in this process for %g s",
                        STORE_RETRY_SECONDS)
            self._store_down_until = time.monotonic() + STORE_RETRY_SECONDS
            limiter = self.fallback
            refused = self._first_refused(limiter, checks)
        if refused is not None:
            limit, scope, key = refused
            reset_at = limiter.get_window_stats(limit, NAMESPACE, scope, key).reset_time
            raise RateLimited(f"Limit: {limit}.",
                              retry_after_seconds=max(1, int(reset_at - time.time()) + 1))

    @staticmethod
    def _first_refused(limiter: FixedWindowRateLimiter,
                       checks: tuple[tuple[RateLimitItem, str, str], ...]):
        for limit, scope, key in checks:
            if not limiter.hit(limit, NAMESPACE, scope, key):
                return limit, scope, key
        return None


def init_rate_limits(app: Flask, settings: Settings) -> RateLimits:
    """Check every request against its endpoint's limits, before its view runs."""
    rate_limits = RateLimits(settings)
    app.before_request(rate_limits.check_request)
    return rate_limits
