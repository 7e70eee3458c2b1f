"""Alert destinations: one small class per channel kind, one error that says if a retry can help.

A transport delivers one alert to one channel, or raises DeliveryError (transports/base.py). The
delivery engine (delivery.py) and the channel test (channels.py) both go through
`Transports.attempt`, which turns one delivery into the outcome that is recorded. A new kind is
a new class in TRANSPORTS; the engine knows no kind by name.
"""
from __future__ import annotations

import time
from typing import Any

from config import Settings
from transports.apprise_url import Apprise
from transports.base import (
    OUTCOMES,
    Attempt,
    DeliveryError,
    Destination,
    HttpPools,
    Transport,
    is_breaker_failure,
    permanent,
    transient,
)
from transports.pagerduty import PagerDuty
from transports.smtp import Email
from transports.webhook import Slack, Webhook
from utils.clock import Clock

__all__ = ["OUTCOMES", "Attempt", "CHANNEL_KINDS", "DeliveryError", "Destination",
           "TRANSPORTS", "Transport", "Transports", "is_breaker_failure", "permanent",
           "transient", "Webhook", "Slack", "Email", "PagerDuty", "Apprise"]

TRANSPORTS: dict[str, type[Transport]] = {"webhook": Webhook, "slack": Slack, "email": Email,
                                          "pagerduty": PagerDuty, "apprise": Apprise}
CHANNEL_KINDS = tuple(TRANSPORTS)


class Transports:
    """The transport of each kind, sharing connection pools; `attempt` delivers and classifies."""

    def __init__(self, settings: Settings, clock: Clock):
        pools = HttpPools(settings.ALLOW_PRIVATE_WEBHOOK_TARGETS)
        self.by_kind = {kind: transport(settings, clock, pools)
                        for kind, transport in TRANSPORTS.items()}

    def attempt(self, destination: Destination, alert_uuid: str,
                payload: dict[str, Any]) -> Attempt:
        """Deliver once; never raises."""
        started = time.perf_counter()
        http_status, error_text, retry_after, unexpected = None, None, None, None
        transport = self.by_kind.get(destination.kind)
        try:
            if transport is None:
                raise permanent(f"unknown channel kind {destination.kind!r}")
            http_status = transport.deliver(destination, alert_uuid, payload)
            outcome = "delivered"
        except DeliveryError as error:
            outcome = "permanent_error" if error.permanent else "transient_error"
            error_text, http_status = str(error), error.http_status
            retry_after = error.retry_after_seconds
        except Exception as error:  # a bug in a transport: keep the alert, retry later
            outcome, error_text = "transient_error", f"internal error: {type(error).__name__}"
            unexpected = error
        return Attempt(outcome, http_status, error_text, retry_after,
                       time.perf_counter() - started, unexpected)
