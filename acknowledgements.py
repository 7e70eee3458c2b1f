"""Acknowledging an incident (SPEC §8): by the API, or by the one-click link in an alert.

An acknowledged incident gets no reminders and no further escalation steps, and a down alert
still held for it is never sent. The channels that were told of it and take acknowledgements
(their transport says `receives_acknowledgements`, e.g. PagerDuty) get
`application.acknowledged`.

The link (ack_links.py) needs no API key: `GET` shows a confirmation page and only its form's
`POST` acknowledges, so a mail scanner that follows links acknowledges nothing. The token in
the URL is the secret; a cross-site form would need it, so the form needs no other CSRF token.
"""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, render_template, request
from sqlalchemy import select

from ack_links import AckLink, InvalidAckLink, read_ack_token
from database import db
from exceptions import Conflict
from incidents import IncidentNotFound, queue_alert, told_channels
from models import ApiKey, Application, Channel, Incident
from runtime import current_runtime
from transports import TRANSPORTS

ACKNOWLEDGED = "application.acknowledged"
MAX_NOTE_CHARS = 2000

ack_bp = Blueprint("acknowledge", __name__)


def receives_acknowledgements(channel: Channel) -> bool:
    return bool(getattr(TRANSPORTS.get(channel.kind), "receives_acknowledgements", False))


def acknowledge(incident_id: int, by: str, note: str | None, now: dt.datetime) -> Incident:
    """Acknowledge the incident if it is open and not acknowledged yet; the incident as it is
    then (a resolved one, or one acknowledged before, is left as it was)."""
    application_id = db.session.scalar(select(Incident.application_id).where(
        Incident.id == incident_id))
    if application_id is None:
        raise IncidentNotFound(incident_id)
    # The application's row first, then the incident's: the order ingest locks them in.
    application = db.session.execute(select(Application).where(
        Application.id == application_id).with_for_update()).scalar_one()
    incident = db.session.execute(
        select(Incident).where(Incident.id == incident_id).with_for_update()
        .execution_options(populate_existing=True)).scalar_one()
    if incident.resolved_at is None and incident.acknowledged_at is None:
        incident.acknowledged_at, incident.acknowledged_by = now, by[:300]
        incident.acknowledgement_note = note or None
        incident.next_reminder_at = incident.next_escalation_at = incident.next_check_at = None
        if incident.alerted_at is not None:
            for channel in told_channels(incident):
                if receives_acknowledgements(channel):
                    queue_alert(channel, ACKNOWLEDGED, application, incident, now)
    db.session.commit()
    return incident


def acknowledge_by_api_key(incident_id: int, api_key_id: int, note: str | None,
                           now: dt.datetime) -> Incident:
    """The API's acknowledgement: 409 for a resolved incident; again on an acknowledged one
    changes nothing."""
    incident = acknowledge(incident_id, f"api-key:{db.session.get(ApiKey, api_key_id).name}",
                           note, now)
    if incident.resolved_at is not None:
        raise Conflict("This incident is resolved; there is nothing to acknowledge.")
    return incident


def _linked_incident(token: str) -> tuple[AckLink, Incident]:
    link = read_ack_token(token)
    incident = db.session.get(Incident, link.incident_id)
    if incident is None or not link.names(incident):
        raise InvalidAckLink()
    return link, incident


def _page(incident: Incident, acknowledged_now: bool = False):
    now = current_runtime().clock.now()
    page = render_template("acknowledge.html", incident=incident, application=incident.application,
                           acknowledged_now=acknowledged_now, now=now)
    db.session.rollback()
    return page


@ack_bp.get("/acknowledge/<token>")
def confirm_page(token: str):
    """What the link shows: the incident and a button; nothing changes."""
    _, incident = _linked_incident(token)
    return _page(incident)


@ack_bp.post("/acknowledge/<token>")
def acknowledge_by_link(token: str):
    link, incident = _linked_incident(token)
    if incident.resolved_at is not None or incident.acknowledged_at is not None:
        return _page(incident)
    channel = db.session.get(Channel, link.channel_id) if link.channel_id else None
    by = f"link:{channel.name}" if channel is not None else "link"
    note = request.form.get("note", "").strip()[:MAX_NOTE_CHARS]
    incident = acknowledge(incident.id, by, note, current_runtime().clock.now())
    return _page(incident, acknowledged_now=incident.acknowledged_by == by)
