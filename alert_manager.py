"""The alerts API: list the outbox, show one alert with its attempts, re-queue a dead one.

How alerts come to be is in outbox.py; how they are sent, in delivery.py and transports.py.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from database import db
from exceptions import AlertNotFound, Conflict
from models import Alert, DeliveryAttempt
from utils.pagination import paginate


def get_alert(alert_id: int) -> Alert:
    alert = db.session.get(Alert, alert_id)
    if alert is None:
        raise AlertNotFound(alert_id)
    return alert


def alert_attempts(alert: Alert) -> list[DeliveryAttempt]:
    return list(db.session.execute(
        select(DeliveryAttempt).where(DeliveryAttempt.alert_id == alert.id)
        .order_by(DeliveryAttempt.attempted_at, DeliveryAttempt.id)).scalars())


def list_alerts(state: str | None, limit: int, cursor: str | None) -> tuple[list[Alert], str | None]:
    """Alerts, newest first."""
    query = select(Alert)
    if state:
        query = query.where(Alert.state == state)
    return paginate(query, [Alert.id], limit, cursor, scope="alerts")


def retry_alert(alert_id: int, now: dt.datetime, max_age_seconds: int) -> Alert:
    """Re-queue a dead or failed alert, with a fresh age limit."""
    alert = get_alert(alert_id)
    if alert.state not in ("dead", "failed"):
        raise Conflict(f"Only dead or failed alerts can be retried; this one is {alert.state}.")
    alert.state = "pending"
    alert.next_attempt_at = now
    alert.expires_at = now + dt.timedelta(seconds=max_age_seconds)
    alert.claimed_until = None
    db.session.commit()
    return alert
