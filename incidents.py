"""Incidents (SPEC §6.1, §6.4): opened and resolved at the up/down boundary, with their alerts.

Called inside the transaction that changes the application's status, by ingest (a heartbeat)
and by the monitor (a deadline passed), so the incident, the status and the alerts (outbox.py)
commit together or not at all.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from database import db
from models import Application, Incident
from outbox import enqueue_application_alerts
from runtime import current_runtime
from status_rules import Transition


def apply_transition(application: Application, transition: Transition,
                     now: dt.datetime) -> Incident | None:
    """Open or resolve the incident and queue one alert per channel (same transaction)."""
    if transition.kind == "opened":
        opened = open_incidents([(application, transition.reason)], now)
        return opened[0] if opened else None
    max_age = current_runtime().settings.ALERT_MAX_AGE_SECONDS
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
    max_age = current_runtime().settings.ALERT_MAX_AGE_SECONDS
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


