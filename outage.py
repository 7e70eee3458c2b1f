"""Our own outage must not page anyone (SPEC §6.3).

After each successful tick the monitor notes that the service was alive. Before judging, a
monitor that finds the last note older than the outage gap (OUTAGE_GAP_SECONDS, by default
three monitor intervals) knows the service could not receive heartbeats in between, and
extends the deadlines that fell in that gap by its length. Timers of open incidents
(reminders, escalation) are not moved: those incidents were real.
"""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select, update

from database import db
from models import Application, ServiceState
from runtime import current_runtime
from status_rules import next_check_at

log = logging.getLogger(__name__)

ALIVE_KEY = "alive"


def record_alive(now: dt.datetime) -> None:
    """Note that the service was up and judging at `now` (after a successful tick)."""
    updated = db.session.execute(
        update(ServiceState).where(ServiceState.key == ALIVE_KEY,
                                   ServiceState.updated_at < now)
        .values(updated_at=now, value={"at": now.isoformat()}))
    if updated.rowcount == 0 and db.session.get(ServiceState, ALIVE_KEY) is None:
        db.session.add(ServiceState(key=ALIVE_KEY, updated_at=now, value={"at": now.isoformat()}))
    db.session.commit()


def close_outage_gap(now: dt.datetime) -> dt.timedelta | None:
    """If nothing was alive for longer than the outage gap, push back deadlines in the gap.

    Applications whose next check fell inside the gap [last alive, now] get every deadline
    extended by the gap's length, so they are judged as if the service had never been away.
    One monitor wins the compare-and-set on the alive row and shifts; the others see no gap.
    """
    alive = db.session.get(ServiceState, ALIVE_KEY)
    threshold = dt.timedelta(seconds=current_runtime().settings.outage_gap_seconds)
    if alive is None or now - alive.updated_at <= threshold:
        return None
    gap_started = alive.updated_at
    gap = now - gap_started
    won = db.session.execute(
        update(ServiceState).where(ServiceState.key == ALIVE_KEY,
                                   ServiceState.updated_at == gap_started)
        .values(updated_at=now, value={"at": now.isoformat(), "gap_seconds": gap.total_seconds()}))
    if won.rowcount != 1:
        db.session.rollback()
        return None
    in_gap = db.session.execute(select(Application).where(
        Application.next_check_at >= gap_started, Application.next_check_at <= now)).scalars()
    for application in in_gap:
        due = next_check_at(application)
        if due is not None and due > now:  # a check kept by check_after_heartbeat: nothing
            application.next_check_at = due  # fell due in the gap
            continue
        for name in ("next_deadline_at", "last_start_at", "next_check_at"):
            if getattr(application, name) is not None:
                setattr(application, name, getattr(application, name) + gap)
    db.session.commit()
    log.warning("service was unavailable for %.0f s; deadlines inside the gap extended",
                gap.total_seconds())
    return gap


