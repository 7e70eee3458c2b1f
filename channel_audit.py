"""Channels the current settings would refuse, found at start-up rather than at the first alert.

A channel saved under other settings (a private webhook target before
ALLOW_PRIVATE_WEBHOOK_TARGETS was turned off, an email channel before SMTP_URL was unset) cannot
deliver now. The audit runs once per process, when its background work starts or at the first
`/health/dependencies`; each refused channel is logged and reported unhealthy there.
"""
from __future__ import annotations

import dataclasses
import logging
import threading

from flask import Flask
from sqlalchemy import select

from channels import refused_target
from config import Settings
from database import db
from models import Channel

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RefusedChannel:
    id: int
    name: str
    kind: str
    reason: str


def refusal(channel: Channel, settings: Settings) -> str | None:
    """Why these settings would refuse the channel, or None when it can deliver."""
    if channel.kind == "email" and not settings.SMTP_URL:
        return "SMTP_URL is not configured"
    return refused_target(channel, settings)


class ChannelAudit:
    """The refused channels of this process's settings, found once (again if it failed)."""

    def __init__(self, app: Flask, settings: Settings):
        self.app = app
        self.settings = settings
        self._lock = threading.Lock()
        self._refused: list[RefusedChannel] | None = None

    def refused(self) -> list[RefusedChannel]:
        """The refused channels; audits (and logs them) on the first call in this process."""
        with self._lock:
            if self._refused is None:
                self._refused = self._audit()
            return self._refused or []

    def _audit(self) -> list[RefusedChannel] | None:
        with self.app.app_context():
            try:
                channels = list(db.session.execute(select(Channel).order_by(Channel.id))
                                .scalars())
            except Exception as error:  # the database away: audit at the next call
                db.session.rollback()
                log.warning("channel audit postponed: %s", type(error).__name__)
                return None
            refused = []
            for channel in channels:
                reason = refusal(channel, self.settings)
                if reason:
                    refused.append(RefusedChannel(channel.id, channel.name, channel.kind,
                                                  reason))
                    log.warning("channel %d (%s, %s) cannot deliver under the current "
                                "settings: %s", channel.id, channel.name, channel.kind, reason)
            db.session.rollback()
        return refused
