"""The contract every transport keeps: deliver, or raise one DeliveryError (SPEC §6.8).

DeliveryError says permanent (a 4xx other than 429, a refused target, a missing setting) or
transient (a timeout, a connection error, a 5xx or 429, a "no"), with the Retry-After the
destination asked for.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import threading
from typing import Any

import urllib3

from config import Settings
from utils.clock import Clock
from utils.ssrf_guard import guarded_pool_manager

USER_AGENT = "HeartbeatMonitor/1.0"


class DeliveryError(Exception):
    """A failed delivery; `permanent` when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool, retry_after_seconds: float | None = None,
                 http_status: int | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.retry_after_seconds = retry_after_seconds
        self.http_status = http_status


def transient(message: str, **details: Any) -> DeliveryError:
    return DeliveryError(message, permanent=False, **details)


def permanent(message: str, **details: Any) -> DeliveryError:
    return DeliveryError(message, permanent=True, **details)


def is_breaker_failure(error: BaseException) -> bool:
    """What counts against a channel's breaker: a transient failure only (SPEC §6.4)."""
    return isinstance(error, DeliveryError) and not error.permanent


@dataclasses.dataclass(frozen=True)
class Destination:
    """What a transport needs of a channel."""

    id: int
    kind: str
    url: str | None = None
    headers: dict | None = None
    secret: str | None = None
    addresses: list | None = None

    @classmethod
    def of(cls, channel: Any) -> "Destination":
        return cls(channel.id, channel.kind, channel.url, channel.headers, channel.secret,
                   channel.addresses)


OUTCOMES = ("delivered", "transient_error", "permanent_error")


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One delivery attempt as recorded: delivered, transient_error or permanent_error."""

    outcome: str
    http_status: int | None
    error: str | None
    retry_after_seconds: float | None
    duration_seconds: float
    # A transport that raised something other than DeliveryError (a bug): kept for the error log.
    unexpected: BaseException | None = None

    @property
    def delivered(self) -> bool:
        return self.outcome == "delivered"


def retry_after_seconds(value: str | None, now: dt.datetime) -> float | None:
    """A Retry-After header (seconds or an HTTP date) as seconds from `now`."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (moment - now).total_seconds())


class Transport:
    """Delivers alerts to channels of one kind."""

    def __init__(self, settings: Settings, clock: Clock, pools: "HttpPools"):
        self.settings = settings
        self.clock = clock
        self.pools = pools

    def deliver(self, destination: Destination, alert_uuid: str,
                payload: dict[str, Any]) -> int | None:
        """Deliver, returning the HTTP status if there is one; raise DeliveryError otherwise."""
        raise NotImplementedError


class HttpPools:
    """urllib3 connection pools, one set per thread (each keeps its own connections alive)."""

    def __init__(self, allow_private_targets: bool):
        self.allow_private_targets = allow_private_targets
        self._local = threading.local()

    def get(self) -> urllib3.PoolManager:
        pools = getattr(self._local, "pools", None)
        if pools is None:
            pools = self._local.pools = guarded_pool_manager(self.allow_private_targets)
        return pools
