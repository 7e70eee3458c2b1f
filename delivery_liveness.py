"""Liveness of delivery processes: alerts held by a process that died are free within 15 s.

Every process that delivers alerts has a row in `delivery_processes` and renews its `alive_at`
on each delivery pass, at most every RENEW_EVERY; the alerts it claims carry its id
(`alerts.claimed_by`). An alert is free to claim when its lease has run out, or when its owner
has not been seen alive for DEAD_AFTER (SIGKILL, OOM, power loss: SPEC §6.4a). The lease stays
as the bound for an owner that is alive but stuck.
"""
from __future__ import annotations

import datetime as dt
import os
import socket

from sqlalchemy import ColumnElement, and_, delete, or_, select, update

from database import db
from models import Alert, DeliveryProcess, new_uuid

RENEW_EVERY = dt.timedelta(seconds=2)
DEAD_AFTER = dt.timedelta(seconds=10)
FORGET_AFTER = dt.timedelta(days=1)


class Liveness:
    """This process's liveness row; `renew` is called inside an app context."""

    def __init__(self) -> None:
        self.process_id = new_uuid()
        self.name = f"{socket.gethostname()}:{os.getpid()}"[:200]
        self._renewed_at: dt.datetime | None = None

    def renew(self, now: dt.datetime) -> None:
        """Say this process is alive, unless it did less than RENEW_EVERY ago."""
        last = self._renewed_at
        if last is not None and last <= now < last + RENEW_EVERY:
            return
        renewed = db.session.execute(update(DeliveryProcess).where(
            DeliveryProcess.id == self.process_id).values(alive_at=now)).rowcount
        if not renewed:
            db.session.add(DeliveryProcess(id=self.process_id, name=self.name, started_at=now,
                                           alive_at=now))
            db.session.execute(delete(DeliveryProcess).where(
                DeliveryProcess.alive_at < now - FORGET_AFTER))
        db.session.commit()
        self._renewed_at = now


def claim_is_free(now: dt.datetime) -> ColumnElement[bool]:
    """An alert no live process holds: never claimed, its lease run out, or its owner dead."""
    owner_alive = select(DeliveryProcess.id).where(
        DeliveryProcess.id == Alert.claimed_by,
        DeliveryProcess.alive_at >= now - DEAD_AFTER).exists()
    return or_(Alert.claimed_until.is_(None), Alert.claimed_until < now,
               and_(Alert.claimed_by.is_not(None), ~owner_alive))
