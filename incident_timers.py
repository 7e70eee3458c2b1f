"""What time does to open incidents (SPEC §8): held alerts released, reminders, escalation steps.

Every tick the monitor claims the incidents whose `next_check_at` has come (an indexed query;
`FOR UPDATE SKIP LOCKED`, so several monitors never act on one incident twice) and, in the
transaction that writes their alerts to the outbox:
- a held down alert goes out once no window covers the application and no ancestor has an
  open incident (an acknowledged incident's held alert never goes out: someone is on it);
- a reminder (`application.still_down`) goes to the application's channels when due, unless
  a window covers the application then (that reminder is skipped);
- each escalation step that is due goes to its channels (`application.down` with
  `escalation_step`), once; a window holds it until the window ends.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from database import db
from dependencies import open_ancestors
from incidents import DOWN, STILL_DOWN, announce, plan_timers, queue_alert
from maintenance import ActiveWindow, active_windows, hold_ends_at
from models import Application, Channel, Incident

BATCH_SIZE = 200


def check_due_incidents(now: dt.datetime) -> int:
    """Act on every incident whose next check has come; returns how many were looked at.

    An incident is claimed with its application's row, in the order ingest locks them
    (application, then incident), so a heartbeat resolving it at the same moment waits for
    this transaction or is skipped, never deadlocked. `FOR NO KEY UPDATE` leaves the rows free
    for the key-share locks of alerts inserted elsewhere.
    """
    checked = 0
    while True:
        batch = db.session.execute(
            select(Incident, Application)
            .join(Application, Incident.application_id == Application.id)
            .where(Incident.next_check_at <= now)
            .order_by(Incident.next_check_at, Incident.id).limit(BATCH_SIZE)
            .with_for_update(skip_locked=True, key_share=True, of=[Incident, Application])
        ).all()
        if not batch:  # nothing locked, nothing written: the tick's next task commits
            return checked
        _check(batch, now)
        db.session.commit()
        checked += len(batch)
        if len(batch) < BATCH_SIZE:
            return checked


def _check(batch: list[tuple[Incident, Application]], now: dt.datetime) -> None:
    windows = active_windows(now)
    held = [application for incident, application in batch if incident.alerted_at is None]
    ancestors = open_ancestors(held) if held else {}
    for incident, application in batch:
        holding = windows.covering(application)
        if incident.resolved_at is not None:
            incident.next_check_at = None
        elif incident.alerted_at is None:
            _release_or_hold(incident, application, holding, ancestors.get(application.id), now)
        else:
            _follow_up(incident, application, holding, now)


def _release_or_hold(incident: Incident, application: Application,
                     holding: list[ActiveWindow], ancestor_uuid: str | None,
                     now: dt.datetime) -> None:
    incident.next_check_at = None
    if incident.acknowledged_at is not None:
        return
    if holding:
        incident.in_maintenance = True
        incident.next_check_at = hold_ends_at(holding)
    if ancestor_uuid is not None:
        incident.suppressed_by = ancestor_uuid
    if not holding and ancestor_uuid is None:
        announce(incident, application, now)


def _follow_up(incident: Incident, application: Application, holding: list[ActiveWindow],
               now: dt.datetime) -> None:
    if incident.acknowledged_at is not None:
        plan_timers(incident, application, now)
        return
    if incident.next_reminder_at is not None and incident.next_reminder_at <= now \
            and not holding:
        for channel in application.channels:
            queue_alert(channel, STILL_DOWN, application, incident, now)
    steps = application.escalation or []
    while not holding and incident.escalation_step < len(steps) \
            and incident.alerted_at + dt.timedelta(
                seconds=steps[incident.escalation_step]["after_seconds"]) <= now:
        incident.escalation_step += 1
        for channel in _existing_channels(steps[incident.escalation_step - 1]["channels"]):
            queue_alert(channel, DOWN, application, incident, now,
                        escalation_step=incident.escalation_step)
    plan_timers(incident, application, now, hold_ends_at(holding) if holding else None)


def _existing_channels(channel_ids: list[int]) -> list[Channel]:
    """The step's channels that still exist (a deleted one is skipped)."""
    return list(db.session.execute(
        select(Channel).where(Channel.id.in_(channel_ids)).order_by(Channel.id)).scalars())
