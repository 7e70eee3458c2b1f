"""Incidents (SPEC §6.1, §6.4, §8): opened and resolved at the up/down boundary, with their alerts.

Called inside the transaction that changes the application's status, by ingest (a heartbeat),
by the monitor (a deadline passed) and by a pause, so the incident, the status and the alerts
(outbox.py) commit together or not at all. An application is down exactly while it has an
open incident: pausing resolves it.

Opening decides once whether the down alert goes out now or is held: by a maintenance window
covering the application (`in_maintenance`) or by an ancestor with an open incident
(`suppressed_by`). A held alert is released by the monitor (incident_timers.py) when nothing
holds it any more; an incident resolved before that is never announced. The recovery alert goes
to every channel that was told of the incident: the channels of its down alerts.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from ack_links import ack_url
from database import db
from dependencies import open_ancestors, wake_suppressed
from exceptions import NotFound
from maintenance import active_windows, hold_ends_at
from models import Alert, Application, Channel, Incident
from outbox import enqueue_alert
from runtime import current_runtime
from status_rules import Transition
from utils.pagination import paginate

DOWN, UP, STILL_DOWN = "application.down", "application.up", "application.still_down"


class IncidentNotFound(NotFound):
    message = "Incident not found"

    def __init__(self, incident_id: Any):
        super().__init__(f"No incident found with id: {incident_id}")


def apply_transition(application: Application, transition: Transition,
                     now: dt.datetime) -> Incident | None:
    """Open or resolve the incident and queue its alerts (same transaction)."""
    if transition.kind == "opened":
        opened = open_incidents([(application, transition.reason)], now)
        return opened[0] if opened else None
    return resolve_incident(application, now, "recovered")


def open_incidents(opening: list[tuple[Application, str]], now: dt.datetime) -> list[Incident]:
    """Open an incident per (application, reason) and queue the alerts nothing holds.

    An application that still has an open incident gets no second one. An application of the
    batch holds its descendants' alerts as if it had opened first. Each incident is written
    once, with what holds it (or when it was alerted) already decided.
    """
    already_open = set(db.session.execute(select(Incident.application_id).where(
        Incident.application_id.in_([application.id for application, _ in opening]),
        Incident.resolved_at.is_(None))).scalars())
    opening = [(application, reason) for application, reason in opening
               if application.id not in already_open]
    if not opening:
        return []
    windows = active_windows(now)
    ancestors = open_ancestors([application for application, _ in opening], for_opening=True,
                               opening_ids={application.id for application, _ in opening})
    incidents = []
    for application, reason in opening:
        holding = windows.covering(application)
        incident = Incident(application_id=application.id, reason=reason, started_at=now,
                            in_maintenance=bool(holding), escalation_step=0,
                            suppressed_by=ancestors.get(application.id))
        if holding:
            incident.next_check_at = hold_ends_at(holding)
        elif incident.suppressed_by is None:
            incident.alerted_at = now
            plan_timers(incident, application, now)
        incidents.append(incident)
    db.session.add_all(incidents)
    db.session.flush()  # the alerts' payloads carry the incidents' ids
    for (application, _), incident in zip(opening, incidents):
        if incident.alerted_at is not None:
            queue_down_alerts(incident, application, now)
    return incidents


def announce(incident: Incident, application: Application, now: dt.datetime) -> None:
    """Queue a held incident's down alert now, and start its timers."""
    incident.alerted_at = now
    plan_timers(incident, application, now)
    queue_down_alerts(incident, application, now)


def queue_down_alerts(incident: Incident, application: Application, now: dt.datetime) -> None:
    for channel in application.channels:
        queue_alert(channel, DOWN, application, incident, now)


def plan_timers(incident: Incident, application: Application, now: dt.datetime,
                escalation_held_until: dt.datetime | None = None) -> None:
    """When the incident's next reminder and escalation step are due, and when the monitor
    looks at it next (an escalation step held by a window waits for the window's end).

    Reminders fall every reminder_interval_seconds after the down alert; escalation step k
    its after_seconds after it. Nothing is due for an acknowledged, resolved or held incident.
    """
    alerted = incident.alerted_at
    if incident.resolved_at is not None or incident.acknowledged_at is not None \
            or alerted is None:
        incident.next_reminder_at = incident.next_escalation_at = incident.next_check_at = None
        return
    interval = application.reminder_interval_seconds or 0
    if interval <= 0:
        incident.next_reminder_at = None
    elif incident.next_reminder_at is None or incident.next_reminder_at <= now:
        intervals_passed = int((now - alerted).total_seconds() // interval)
        incident.next_reminder_at = alerted + dt.timedelta(seconds=interval * (intervals_passed + 1))
    steps = application.escalation or []
    incident.next_escalation_at = None
    if incident.escalation_step < len(steps):
        incident.next_escalation_at = alerted + dt.timedelta(
            seconds=steps[incident.escalation_step]["after_seconds"])
    escalation_check = incident.next_escalation_at
    if escalation_check is not None and escalation_held_until is not None:
        escalation_check = max(escalation_check, escalation_held_until)
    due = [moment for moment in (incident.next_reminder_at, escalation_check) if moment]
    incident.next_check_at = min(due) if due else None


def queue_alert(channel: Channel, event: str, application: Application, incident: Incident,
                now: dt.datetime, **extra: Any) -> Alert:
    """One alert about an incident; down alerts and reminders carry the acknowledgement link."""
    if event in (DOWN, STILL_DOWN):
        extra["ack_url"] = ack_url(incident, channel)
    return enqueue_alert(channel, event, extra, application, incident, now,
                         current_runtime().settings.ALERT_MAX_AGE_SECONDS)


def told_channels(incident: Incident) -> list[Channel]:
    """Every channel that was sent a down alert about the incident (escalation steps too)."""
    told = select(Alert.channel_id).where(Alert.incident_id == incident.id, Alert.event == DOWN)
    return list(db.session.execute(
        select(Channel).where(Channel.id.in_(told)).order_by(Channel.id)).scalars())


def open_incident_of(application: Application, *, for_update: bool = False) -> Incident | None:
    query = select(Incident).where(Incident.application_id == application.id,
                                   Incident.resolved_at.is_(None))
    if for_update:
        query = query.with_for_update()
    return db.session.execute(query.order_by(Incident.started_at.desc()).limit(1)).scalar_one_or_none()


def resolve_incident(application: Application, now: dt.datetime,
                     resolution: str) -> Incident | None:
    """Resolve the application's open incident (a success, or a pause).

    The recovery alert goes to every channel told of it; an incident never announced (held by
    a window or a dependency) ends without a word. Incidents it suppressed are looked at again.
    """
    incident = open_incident_of(application, for_update=True)
    if incident is None:
        return None
    incident.resolved_at, incident.resolution = now, resolution
    incident.next_reminder_at = incident.next_escalation_at = incident.next_check_at = None
    if incident.alerted_at is not None:
        for channel in told_channels(incident):
            queue_alert(channel, UP, application, incident, now)
    wake_suppressed(application.uuid, now)
    return incident


# --- The incidents API ------------------------------------------------------------------------

def get_incident(incident_id: int) -> Incident:
    incident = db.session.get(Incident, incident_id)
    if incident is None:
        raise IncidentNotFound(incident_id)
    return incident


def list_incidents(state: str | None, limit: int,
                   cursor: str | None) -> tuple[list[Incident], str | None]:
    """Incidents of every application, newest first; `state` open, acknowledged or resolved."""
    query = select(Incident)
    if state == "resolved":
        query = query.where(Incident.resolved_at.is_not(None))
    elif state == "open":
        query = query.where(Incident.resolved_at.is_(None), Incident.acknowledged_at.is_(None))
    elif state == "acknowledged":
        query = query.where(Incident.resolved_at.is_(None),
                            Incident.acknowledged_at.is_not(None))
    return paginate(query, [Incident.id], limit, cursor, scope="all-incidents")
