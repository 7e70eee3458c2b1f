"""Heartbeats in, status out: recording a heartbeat and judging an application's status."""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import select

from database import db
from exceptions import HeartbeatNotFound
from models import Application, Heartbeat, new_uuid
from monitoring import metrics
from schedule import next_deadline

MAX_PING_MESSAGE_BYTES = 100 * 1024


@dataclasses.dataclass
class Signal:
    """One heartbeat as received, before it is stored."""

    kind: str
    received_at: dt.datetime
    exit_code: int | None = None
    message: str = ""
    duration_ms: int | None = None
    metadata: dict[str, Any] | None = None
    rid: str | None = None
    source: str = "ping"
    remote_addr: str | None = None
    user_agent: str | None = None
    uuid: str = dataclasses.field(default_factory=new_uuid)


@dataclasses.dataclass(frozen=True)
class Transition:
    """A change across the up/down boundary: an incident opens or resolves."""

    kind: str  # "opened" | "resolved"
    reason: str  # "missed" | "failed" | "recovered"


def kind_for_exit_code(exit_code: int) -> str:
    return "ok" if exit_code == 0 else "fail"


def record_heartbeat(application_uuid: str, signal: Signal) -> Heartbeat:
    """Store a heartbeat and apply it to its application in one transaction."""
    application = db.session.execute(
        select(Application).where(Application.uuid == application_uuid).with_for_update()
    ).scalar_one_or_none()
    if application is None:
        db.session.rollback()
        raise HeartbeatNotFound(application_uuid)
    heartbeat = Heartbeat(
        uuid=signal.uuid, application=application, kind=signal.kind,
        exit_code=signal.exit_code, message=signal.message, duration_ms=signal.duration_ms,
        metadata_json=signal.metadata, rid=signal.rid, source=signal.source,
        remote_addr=signal.remote_addr, user_agent=signal.user_agent,
        received_at=signal.received_at)
    apply_heartbeat(application, heartbeat)
    db.session.add(heartbeat)
    db.session.commit()
    metrics.HEARTBEATS.labels(kind=signal.kind).inc()
    return heartbeat


def apply_heartbeat(application: Application, heartbeat: Heartbeat) -> Transition | None:
    """Update the application's status and deadlines for one heartbeat; return the transition."""
    now, kind = heartbeat.received_at, heartbeat.kind
    if kind == "log":
        return None
    previous = application.status
    application.last_heartbeat_at = now
    application.updated_at = now
    if kind == "start":
        application.last_start_at = now
        application.last_start_rid = heartbeat.rid
        if previous == "paused":
            application.status = "up" if application.next_deadline_at else "new"
        application.next_check_at = next_check_at(application)
        return None

    if heartbeat.duration_ms is None:
        heartbeat.duration_ms = _run_duration_ms(application, heartbeat)
    application.last_start_at = None
    application.last_start_rid = None
    application.next_deadline_at = next_deadline(
        application.period_seconds, application.cron, application.timezone, now)
    transition = None
    if kind == "ok":
        application.consecutive_failures = 0
        application.status = "up"
        if previous == "down":
            transition = Transition("resolved", "recovered")
    else:
        application.consecutive_failures += 1
        if application.consecutive_failures >= application.failure_threshold:
            application.status = "down"
            if previous != "down":
                transition = Transition("opened", "failed")
        elif previous != "down":
            application.status = "up"
    application.next_check_at = next_check_at(application)
    return transition


def _run_duration_ms(application: Application, heartbeat: Heartbeat) -> int | None:
    started = application.last_start_at
    if started is None:
        return None
    if heartbeat.rid is not None and heartbeat.rid != application.last_start_rid:
        return None
    return max(0, int((heartbeat.received_at - started).total_seconds() * 1000))


def next_check_at(application: Application) -> dt.datetime | None:
    """When time alone could next change this application's status; None if it cannot."""
    if application.status in ("paused", "down"):
        return None
    grace = dt.timedelta(seconds=application.grace_seconds)
    candidates = []
    if application.status == "up" and application.next_deadline_at:
        candidates.append(application.next_deadline_at)
    elif application.status == "late" and application.next_deadline_at:
        candidates.append(application.next_deadline_at + grace)
    if application.last_start_at is not None:
        candidates.append(application.last_start_at + grace)
    return min(candidates) if candidates else None


def status_by_time(application: Application, now: dt.datetime) -> tuple[str, str | None]:
    """The status time alone gives the application at `now`, and the reason if down."""
    if application.status in ("paused", "down"):
        return application.status, None
    grace = dt.timedelta(seconds=application.grace_seconds)
    if application.last_start_at is not None and now >= application.last_start_at + grace:
        return "down", "missed"
    deadline = application.next_deadline_at
    if application.status in ("up", "late") and deadline is not None:
        if now >= deadline + grace:
            return "down", "missed"
        if now >= deadline:
            return "late", None
    return application.status, None
