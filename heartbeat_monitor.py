"""Heartbeats in, status out: recording a heartbeat and judging an application's status."""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from typing import Any, Callable

from flask import Flask
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import lazyload

from alert_manager import enqueue_application_alerts
from config import runtime
from database import db
from exceptions import HeartbeatNotFound
from models import Application, Heartbeat, Incident, ServiceState, new_uuid
from monitoring import metrics
from monitoring.error_tracking import record_error
from schedule import next_deadline
from utils.clock import Clock

log = logging.getLogger(__name__)

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


def record_heartbeat(application_uuid: str, signal: Signal) -> dict[str, Any]:
    """Store one heartbeat and apply it to its application in one transaction."""
    (result,) = write_heartbeats([(application_uuid, signal)])
    if isinstance(result, BaseException):
        raise result
    return result


def write_heartbeats(items: list[tuple[str, Signal]], *,
                     replay: bool = False) -> list[dict[str, Any] | BaseException]:
    """Store heartbeats in one transaction; an unknown UUID yields HeartbeatNotFound for it.

    Applications are locked in id order, so concurrent writers cannot deadlock. On replay,
    heartbeats already stored are skipped and ones older than the application's latest are
    kept as history without changing its status.
    """
    uuids = sorted({application_uuid for application_uuid, _ in items})
    applications = {application.uuid: application for application in db.session.execute(
        select(Application).where(Application.uuid.in_(uuids)).order_by(Application.id)
        .options(lazyload(Application.tag_rows), lazyload(Application.channels))
        .with_for_update()).scalars()}
    stored: set[str] = set()
    if replay:
        stored = set(db.session.execute(select(Heartbeat.uuid).where(
            Heartbeat.uuid.in_([signal.uuid for _, signal in items]))).scalars())
    results: list[dict[str, Any] | BaseException] = []
    rows: list[dict[str, Any]] = []
    for application_uuid, signal in items:
        application = applications.get(application_uuid)
        if application is None:
            results.append(HeartbeatNotFound(application_uuid))
            continue
        if signal.uuid in stored:
            results.append(heartbeat_view(application_uuid, signal))
            continue
        heartbeat = Heartbeat(
            uuid=signal.uuid, application_id=application.id, kind=signal.kind,
            exit_code=signal.exit_code, message=signal.message, duration_ms=signal.duration_ms,
            metadata_json=signal.metadata, rid=signal.rid, source=signal.source,
            remote_addr=signal.remote_addr, user_agent=signal.user_agent,
            received_at=signal.received_at)
        stale = replay and application.last_heartbeat_at is not None \
            and signal.received_at < application.last_heartbeat_at
        if not stale:
            transition = apply_heartbeat(application, heartbeat)
            if transition is not None:
                apply_transition(application, transition, signal.received_at)
        stored.add(signal.uuid)
        rows.append(_heartbeat_row(heartbeat))
        results.append(heartbeat_view(application_uuid, signal, heartbeat.duration_ms))
    if rows:
        # One multi-row INSERT for the batch; the heartbeats' ids are never read back.
        db.session.execute(insert(Heartbeat), rows)
    db.session.commit()
    return results


_HEARTBEAT_COLUMNS = ("uuid", "application_id", "kind", "exit_code", "message", "duration_ms",
                      "metadata_json", "rid", "source", "remote_addr", "user_agent", "received_at")


def _heartbeat_row(heartbeat: Heartbeat) -> dict[str, Any]:
    return {name: getattr(heartbeat, name) for name in _HEARTBEAT_COLUMNS}


def heartbeat_view(application_uuid: str, signal: Signal,
                   duration_ms: int | None = None) -> dict[str, Any]:
    """The heartbeat as the API shows it (and as the spool keeps it)."""
    return {"uuid": signal.uuid, "application_uuid": application_uuid, "kind": signal.kind,
            "exit_code": signal.exit_code, "message": signal.message,
            "duration_ms": duration_ms if duration_ms is not None else signal.duration_ms,
            "metadata": signal.metadata, "rid": signal.rid, "source": signal.source,
            "received_at": signal.received_at, "remote_addr": signal.remote_addr,
            "user_agent": signal.user_agent}


def apply_heartbeat(application: Application, heartbeat: Heartbeat) -> Transition | None:
    """Update the application's status and deadlines for one heartbeat; return the transition."""
    now, kind = heartbeat.received_at, heartbeat.kind
    if kind == "log":
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
    application.next_check_at = check_after_heartbeat(application, previous_check, now)
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


def check_after_heartbeat(application: Application, previous_check: dt.datetime | None,
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


# --- Incidents and alerts: written in the transaction of the status change ------------------

def apply_transition(application: Application, transition: Transition,
                     now: dt.datetime) -> Incident | None:
    """Open or resolve the incident and queue one alert per channel (same transaction)."""
    if transition.kind == "opened":
        opened = open_incidents([(application, transition.reason)], now)
        return opened[0] if opened else None
    max_age = runtime().settings.ALERT_MAX_AGE_SECONDS
    incident = db.session.execute(
        select(Incident).where(Incident.application_id == application.id,
                               Incident.resolved_at.is_(None))
        .order_by(Incident.started_at.desc()).limit(1)).scalar_one_or_none()
    if incident is None:
        return None
    incident.resolved_at = now
    enqueue_application_alerts(application, incident, "application.up", now, max_age)
    return incident


def open_incidents(opening: list[tuple[Application, str]], now: dt.datetime) -> list[Incident]:
    """Open an incident per (application, reason) and queue its alerts; one flush for all.

    An application that still has an open incident (it was paused while down, then pinged)
    gets no second one: at most one is open per application (a unique index says so too).
    """
    max_age = runtime().settings.ALERT_MAX_AGE_SECONDS
    already_open = set(db.session.execute(select(Incident.application_id).where(
        Incident.application_id.in_([application.id for application, _ in opening]),
        Incident.resolved_at.is_(None))).scalars())
    opening = [(application, reason) for application, reason in opening
               if application.id not in already_open]
    incidents = [Incident(application_id=application.id, reason=reason, started_at=now)
                 for application, reason in opening]
    db.session.add_all(incidents)
    db.session.flush()  # the alerts' payloads carry the incidents' ids
    for (application, _), incident in zip(opening, incidents):
        enqueue_application_alerts(application, incident, "application.down", now, max_age)
    return incidents


# --- The monitor: finds applications whose deadline passed -----------------------------------

class Monitor:
    """Judges due applications every interval; a failed tick is recorded and retried.

    Each `housekeeping` task (pruning old rows) runs after judging about once per
    HOUSEKEEPING_SECONDS of the clock, and a tick runs at most one of them: nothing waits on
    them, and no tick carries them all.
    """

    BATCH_SIZE = 500
    HOUSEKEEPING_SECONDS = 60.0

    def __init__(self, app: Flask, clock: Clock, interval_seconds: float,
                 before_judging: list[Callable[[dt.datetime], Any]] | None = None,
                 after_judging: list[Callable[[dt.datetime], Any]] | None = None,
                 housekeeping: list[Callable[[dt.datetime], Any]] | None = None):
        self.app = app
        self.clock = clock
        self.interval_seconds = interval_seconds
        self.before_judging = before_judging or []
        self.after_judging = after_judging or []
        self.housekeeping = housekeeping or []
        self.housekeeping_due_at: list[dt.datetime | None] = [None] * len(self.housekeeping)
        self.failures = 0

    def tick(self) -> int:
        """One pass over the applications that are due now; returns how many changed."""
        started = time.perf_counter()
        now = self.clock.now()
        changed = 0
        with self.app.app_context():
            for task in self.before_judging:
                task(now)
            while True:
                batch_changed, batch_size = judge_due_applications(now, self.BATCH_SIZE)
                changed += batch_changed
                if batch_size < self.BATCH_SIZE:
                    break
            for task in self.after_judging:
                task(now)
            self.keep_house(now)
        metrics.MONITOR_TICK_SECONDS.observe(time.perf_counter() - started)
        return changed

    def keep_house(self, now: dt.datetime) -> None:
        """Run the first housekeeping task that is due, if any."""
        for index, due_at in enumerate(self.housekeeping_due_at):
            if due_at is None or now >= due_at:
                self.housekeeping[index](now)
                self.housekeeping_due_at[index] = now + dt.timedelta(
                    seconds=self.HOUSEKEEPING_SECONDS)
                return

    def run(self, stop: threading.Event) -> None:
        """Tick until `stop` is set; back off after failures, never die."""
        wait = 0.0
        while not stop.wait(wait):
            try:
                self.tick()
                self.failures = 0
                wait = self.interval_seconds
            except Exception as error:
                self.failures += 1
                wait = min(60.0, self.interval_seconds * 2 ** min(self.failures, 5))
                log.warning("monitor tick failed (%d in a row), retrying in %.0f s: %s",
                            self.failures, wait, type(error).__name__)
                with self.app.app_context():
                    db.session.rollback()
                    record_error(error, 500)


def judge_due_applications(now: dt.datetime, limit: int) -> tuple[int, int]:
    """Apply time to up to `limit` due applications, each claimed by one process only."""
    due = db.session.execute(
        select(Application).where(Application.next_check_at <= now)
        .order_by(Application.next_check_at).limit(limit)
        .with_for_update(skip_locked=True)).scalars().all()
    changed = 0
    opening: list[tuple[Application, str]] = []
    for application in due:
        status, reason = status_by_time(application, now)
        if status != application.status:
            previous = application.status
            application.status = status
            application.updated_at = now
            changed += 1
            if status == "down":
                application.last_start_at = None
                if previous != "down":
                    opening.append((application, reason or "missed"))
        application.next_check_at = next_check_at(application)
    if opening:
        open_incidents(opening, now)
    db.session.commit()
    return changed, len(due)


# --- §6.3: our own outage must not page anyone -------------------------------------------------

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
    """If nothing was alive for longer than OUTAGE_GAP_SECONDS, push back deadlines in the gap.

    Applications whose next check fell inside the gap [last alive, now] get every deadline
    extended by the gap's length, so they are judged as if the service had never been away.
    One monitor wins the compare-and-set on the alive row and shifts; the others see no gap.
    """
    state = db.session.get(ServiceState, ALIVE_KEY)
    threshold = dt.timedelta(seconds=runtime().settings.OUTAGE_GAP_SECONDS)
    if state is None or now - state.updated_at <= threshold:
        return None
    gap_started = state.updated_at
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


# --- Retention: heartbeats older than HEARTBEAT_RETENTION_DAYS go -----------------------------

PRUNE_BATCH_SIZE = 5000
PRUNE_MAX_BATCHES = 20


def prune_old_heartbeats(now: dt.datetime) -> int:
    """Delete heartbeats received more than HEARTBEAT_RETENTION_DAYS ago; returns the count.

    Walks up from the oldest id in batches (ids follow arrival), so it needs no index on
    received_at and, once the oldest heartbeat is recent enough, costs one primary-key lookup.
    A heartbeat replayed from the spool, older than its id, may outlive the retention a little
    but never goes early. Rows another process is deleting are skipped, not waited for. At
    most PRUNE_MAX_BATCHES per call: the next housekeeping goes on.
    """
    days = runtime().settings.HEARTBEAT_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = now - dt.timedelta(days=days)
    deleted = 0
    for _ in range(PRUNE_MAX_BATCHES):
        oldest = db.session.execute(select(Heartbeat.id, Heartbeat.received_at)
                                    .order_by(Heartbeat.id).limit(1)).first()
        if oldest is None or oldest.received_at >= cutoff:
            break
        old = (select(Heartbeat.id)
               .where(Heartbeat.id < oldest.id + PRUNE_BATCH_SIZE, Heartbeat.received_at < cutoff)
               .with_for_update(skip_locked=True))
        count = db.session.execute(delete(Heartbeat).where(Heartbeat.id.in_(old))).rowcount
        db.session.commit()
        deleted += count
        if count == 0:  # another process holds these rows: it is pruning them
            break
    db.session.commit()
    return deleted
