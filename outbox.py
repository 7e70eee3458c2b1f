"""The outbox: alert rows written in the transaction of the change they report (SPEC §6.4).

Nothing here sends anything. Each alert is a pending row for one channel, with its payload fixed
at the moment of the change; the delivery engine (delivery.py) claims and sends it later, and an
alert still undelivered past ALERT_MAX_AGE_SECONDS becomes dead.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import or_, update

from alert_content import alert_facts
from database import db
from models import Alert, Application, Channel, Incident, new_uuid
from utils.clock import utc_iso


def build_payload(event: str, alert_uuid: str, application: Application | None,
                  incident: Incident | None, now: dt.datetime) -> dict[str, Any]:
    """The webhook JSON of §6.4, with what a recipient needs to act (alert_content.py)."""
    payload: dict[str, Any] = {"event": event, "alert_id": alert_uuid, "occurred_at": utc_iso(now)}
    if application is not None:
        facts = alert_facts(application)
        payload["application"] = {
            "uuid": application.uuid, "name": application.name, "status": application.status,
            "last_heartbeat_at": utc_iso(application.last_heartbeat_at),
            "schedule": facts["schedule"], "url": facts["url"]}
        payload["last_heartbeat"] = facts["last_heartbeat"]
    if incident is not None:
        payload["incident"] = {
            "id": incident.id, "started_at": utc_iso(incident.started_at),
            "resolved_at": utc_iso(incident.resolved_at), "reason": incident.reason,
            "acknowledged_at": utc_iso(incident.acknowledged_at),
            "acknowledged_by": incident.acknowledged_by,
            "in_maintenance": incident.in_maintenance, "suppressed_by": incident.suppressed_by}
    return payload


def enqueue_alert(channel: Channel, event: str, payload_extra: dict[str, Any] | None,
                  application: Application | None, incident: Incident | None,
                  now: dt.datetime, max_age_seconds: int) -> Alert:
    """Add one pending alert for one channel to the current transaction."""
    alert_uuid = new_uuid()
    payload = {**build_payload(event, alert_uuid, application, incident, now),
               **(payload_extra or {})}
    alert = Alert(uuid=alert_uuid, channel=channel, event=event, payload=payload,
                  application_id=application.id if application else None,
                  incident_id=incident.id if incident else None, state="pending",
                  attempt_count=0, next_attempt_at=now, created_at=now,
                  expires_at=now + dt.timedelta(seconds=max_age_seconds))
    db.session.add(alert)
    return alert


def enqueue_application_alerts(application: Application, incident: Incident, event: str,
                               now: dt.datetime, max_age_seconds: int) -> list[Alert]:
    """One alert per channel of the application, in the transaction of the status change."""
    return [enqueue_alert(channel, event, None, application, incident, now, max_age_seconds)
            for channel in application.channels]


def expire_alerts(now: dt.datetime) -> int:
    """Alerts still undelivered past their age limit become dead."""
    result = db.session.execute(
        update(Alert).where(Alert.state == "pending", Alert.expires_at <= now,
                            or_(Alert.claimed_until.is_(None), Alert.claimed_until < now))
        .values(state="dead", claimed_until=None))
    db.session.commit()
    return result.rowcount
