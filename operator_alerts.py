"""Alerts about the service itself: `service.error_rate_high` to the operator channels (§6.7).

The rate is measured by monitoring/error_rate.py; deciding to alert, once per cooldown across
every process, and queuing the alerts in the outbox is done here, once per monitor tick.
"""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from config import Settings
from database import db
from models import Alert, Channel, ServiceState
from monitoring.error_rate import ErrorRate, measure_error_rate
from outbox import enqueue_alert
from runtime import current_runtime
from utils.clock import utc_iso

log = logging.getLogger(__name__)

ALERT_EVENT = "service.error_rate_high"
COOLDOWN_KEY = "error_rate_alert"


def check_error_rate(now: dt.datetime) -> list[Alert]:
    """Called each monitor tick: when the rate is high, queue one alert per operator channel.

    At most once per ERROR_RATE_COOLDOWN_SECONDS across all processes: the right to send is
    taken with a compare-and-set on `service_state`, in the same transaction as the alerts.
    Returns the alerts written (none when the rate is normal or the cooldown holds).
    """
    runtime = current_runtime()
    settings = runtime.settings
    runtime.request_counter.flush()  # before this transaction takes any write lock
    measured = measure_error_rate(now, settings)
    db.session.commit()
    if not measured.is_high:
        return []
    if not _take_cooldown(now, measured, settings):
        db.session.rollback()
        return []
    details = {"error_rate": round(measured.rate, 6), "window_seconds": measured.window_seconds,
               "requests": measured.requests, "errors": measured.errors}
    alerts = [enqueue_alert(channel, ALERT_EVENT, details, None, None, now,
                            settings.ALERT_MAX_AGE_SECONDS)
              for channel in db.session.execute(select(Channel).where(
                  Channel.is_operator.is_(True)).order_by(Channel.id)).scalars()]
    db.session.commit()
    log.warning("error rate %.1f%% over %ss (%d of %d requests): %d operator alerts queued",
                measured.rate * 100, measured.window_seconds, measured.errors,
                measured.requests, len(alerts))
    return alerts


def _take_cooldown(now: dt.datetime, measured: ErrorRate, settings: Settings) -> bool:
    """Claim the alert for this cooldown period; False when another process already has."""
    value = {"last_sent_at": utc_iso(now), "error_rate": round(measured.rate, 6)}
    module = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    claimed = db.session.execute(
        module.insert(ServiceState).values(key=COOLDOWN_KEY, value=value, updated_at=now)
        .on_conflict_do_nothing(index_elements=["key"])).rowcount
    if claimed:
        return True
    cooled_down_before = now - dt.timedelta(seconds=settings.ERROR_RATE_COOLDOWN_SECONDS)
    return db.session.execute(
        update(ServiceState)
        .where(ServiceState.key == COOLDOWN_KEY, ServiceState.updated_at <= cooled_down_before)
        .values(value=value, updated_at=now)).rowcount == 1
