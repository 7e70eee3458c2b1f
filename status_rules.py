"""The status rules (SPEC §6.1): what a heartbeat, or the passing of time, does to an application.

Pure functions of an application's state and a moment, shared by every path that changes a
status: the ORM ingest path, the PostgreSQL ingest path (on its own row objects) and the
monitor. They neither read nor write the database; crossing the up/down boundary is returned as
a Transition, which incidents.py turns into an incident and its alerts.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Protocol

from schedule import next_deadline


class ApplicationState(Protocol):
    """What the rules read and change of an application (a model row, or ingest's own row)."""

    status: str
    period_seconds: int | None
    cron: str | None
    timezone: str
    grace_seconds: int
    failure_threshold: int
    consecutive_failures: int
    last_heartbeat_at: dt.datetime | None
    last_start_at: dt.datetime | None
    last_start_rid: str | None
    next_deadline_at: dt.datetime | None
    next_check_at: dt.datetime | None
    updated_at: dt.datetime
    min_duration_seconds: int | None
    max_duration_seconds: int | None
    manual_resume: bool
    methods: str


@dataclasses.dataclass(slots=True)
class HeartbeatFacts:
    """What the rules read of a heartbeat; apply_heartbeat fills in a run's duration_ms."""

    kind: str
    received_at: dt.datetime
    rid: str | None
    duration_ms: int | None

@dataclasses.dataclass(frozen=True)
class Transition:
    """A change across the up/down boundary: an incident opens or resolves."""

    kind: str  # "opened" | "resolved"
    reason: str  # "missed" | "failed" | "too_short" | "too_long" | "recovered"


def kind_for_exit_code(exit_code: int) -> str:
    return "ok" if exit_code == 0 else "fail"


def stored_kind(application: ApplicationState, kind: str, method: str | None) -> str:
    """The kind a heartbeat is stored as: "ign", kept but changing nothing, when the application
    ignores it (Healthchecks' options: a paused application with `manual_resume` ignores every
    heartbeat; one with `methods` "POST" ignores pings sent by another method)."""
    if application.status == "paused" and application.manual_resume:
        return "ign"
    if application.methods == "POST" and method is not None and method != "POST":
        return "ign"
    return kind


def apply_heartbeat(application: ApplicationState, heartbeat: HeartbeatFacts) -> Transition | None:
    """Update the application's status and deadlines for one heartbeat; return the transition."""
    now, kind = heartbeat.received_at, heartbeat.kind
    if kind in ("log", "ign"):
        return None
    previous, previous_check = application.status, application.next_check_at
    application.last_heartbeat_at = now
    application.updated_at = now
    if kind == "start":
        application.last_start_at = now
        application.last_start_rid = heartbeat.rid
        if previous == "paused":
            application.status = "up" if application.next_deadline_at else "new"
        application.next_check_at = check_after_heartbeat(application, previous_check, now)
        return None

    if heartbeat.duration_ms is None:
        heartbeat.duration_ms = _run_duration_ms(application, heartbeat)
    application.last_start_at = None
    application.last_start_rid = None
    application.next_deadline_at = next_deadline(
        application.period_seconds, application.cron, application.timezone, now)
    transition = None
    failure_reason = "failed"
    if kind == "ok" and _too_short(application, heartbeat.duration_ms):
        kind, failure_reason = "fail", "too_short"
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
                transition = Transition("opened", failure_reason)
        elif previous != "down":
            application.status = "up"
    application.next_check_at = check_after_heartbeat(application, previous_check, now)
    return transition


def _too_short(application: ApplicationState, duration_ms: int | None) -> bool:
    """A run that ended faster than min_duration_seconds is a failure (SPEC §8)."""
    minimum = application.min_duration_seconds
    return minimum is not None and duration_ms is not None and duration_ms < minimum * 1000


def run_limit(application: ApplicationState) -> tuple[dt.timedelta, str]:
    """How long a started run may go unfinished, and the reason it is down after that: the
    maximum duration when one is set (too_long), else the grace time (missed)."""
    if application.max_duration_seconds is not None:
        return dt.timedelta(seconds=application.max_duration_seconds), "too_long"
    return dt.timedelta(seconds=application.grace_seconds), "missed"


def _run_duration_ms(application: ApplicationState, heartbeat: HeartbeatFacts) -> int | None:
    started = application.last_start_at
    if started is None:
        return None
    if heartbeat.rid is not None and heartbeat.rid != application.last_start_rid:
        return None
    return max(0, int((heartbeat.received_at - started).total_seconds() * 1000))


def next_check_at(application: ApplicationState) -> dt.datetime | None:
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
        candidates.append(application.last_start_at + run_limit(application)[0])
    return min(candidates) if candidates else None


def check_after_heartbeat(application: ApplicationState, previous_check: dt.datetime | None,
                          received_at: dt.datetime) -> dt.datetime | None:
    """next_check_at after a heartbeat received at `received_at`.

    The next check moves to next_check_at(application), unless the current one is earlier but
    still in the second half of the wait from `received_at` to it: then it stays, and the
    monitor, finding nothing due there, moves it on (judge_due_applications). So an
    application pinged many times per period changes its indexed next_check_at, and has its
    row's indexes rewritten, about twice per period instead of at every ping; on PostgreSQL
    the other pings are HOT updates (heap only). An application pinged once per period still
    has it moved by each ping, and in any case the monitor moves it at most once per kept
    check: never more row writes than moving it at every ping.
    """
    check = next_check_at(application)
    if check is not None and previous_check is not None and previous_check <= check \
            and (previous_check - received_at) * 2 >= check - received_at:
        return previous_check
    return check


def status_by_time(application: ApplicationState, now: dt.datetime) -> tuple[str, str | None]:
    """The status time alone gives the application at `now`, and the reason if down."""
    if application.status in ("paused", "down"):
        return application.status, None
    grace = dt.timedelta(seconds=application.grace_seconds)
    if application.last_start_at is not None:
        limit, reason = run_limit(application)
        if now >= application.last_start_at + limit:
            return "down", reason
    deadline = application.next_deadline_at
    if application.status in ("up", "late") and deadline is not None:
        if now >= deadline + grace:
            return "down", "missed"
        if now >= deadline:
            return "late", None
    return application.status, None


