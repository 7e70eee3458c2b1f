"""What one app instance holds besides Flask's own state: its settings, clock and working parts.

Built by create_app and kept in `app.extensions["hbmon"]`; `current_runtime()` reads it inside a
request or app context. Code that holds it names it `runtime`.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from flask import current_app

from config import Settings
from utils.clock import Clock

if TYPE_CHECKING:  # the parts import this module to find each other at run time
    from background import Background
    from channel_audit import ChannelAudit
    from delivery import Deliverer
    from heartbeat_monitor import Monitor
    from ingest.slug_routes import SlugRoutes
    from ingest.writer import HeartbeatWriter
    from monitoring.error_rate import RequestCounter
    from rate_limits import RateLimits
    from spool import Spool
    from transports import Transports
    from utils.circuit_breaker import Breaker, BreakerRegistry

EXTENSION_KEY = "hbmon"


@dataclasses.dataclass
class Runtime:
    """One app instance's settings, clock, breakers, spools and background parts."""

    settings: Settings
    clock: Clock
    breakers: BreakerRegistry
    db_breaker: Breaker
    heartbeat_spool: Spool
    error_spool: Spool
    writer: HeartbeatWriter
    slug_routes: SlugRoutes
    request_counter: RequestCounter
    rate_limits: RateLimits
    transports: Transports
    deliverer: Deliverer
    monitor: Monitor
    channel_audit: ChannelAudit
    background: Background | None = None

    def shutdown(self) -> None:
        """Stop this instance's threads: monitor and delivery, then the writers."""
        if self.background is not None:
            self.background.stop()  # and the deliverer
        else:  # delivery driven without threads of ours (drain())
            self.deliverer.shutdown(wait=True)
        self.writer.stop()
        self.request_counter.stop()


def current_runtime() -> Runtime:
    """The Runtime of the current Flask app."""
    return current_app.extensions[EXTENSION_KEY]
