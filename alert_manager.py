"""Alerts: written as an outbox with the change they report, then delivered at least once.

Delivery claims due alerts (`FOR UPDATE SKIP LOCKED` on PostgreSQL) with a lease, sends each
through its channel's circuit breaker inside a per-kind bulkhead, and records every attempt.
A transient failure re-queues the alert with jittered backoff (honoring Retry-After); a
permanent one marks it `failed`; an alert older than ALERT_MAX_AGE_SECONDS becomes `dead`.
A crash between sending and recording lets the lease expire, so the alert is sent again:
receivers deduplicate by the `Idempotency-Key` header (the alert's UUID).
"""
from __future__ import annotations

import collections
import datetime as dt
import email.utils
import hashlib
import hmac
import json
import logging
import smtplib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from flask import Flask
from sqlalchemy import or_, select, update

from config import Settings
from database import db
from exceptions import AlertNotFound, Conflict
from models import CHANNEL_KINDS, Alert, Application, Channel, DeliveryAttempt, Incident, new_uuid
from monitoring import metrics
from monitoring.error_tracking import record_error
from utils.circuit_breaker import STATE_OPEN, BreakerRegistry, TransientError
from utils.clock import utc_iso
from utils.pagination import decode_cursor, encode_cursor
from utils.retry import backoff_seconds
from utils.ssrf_guard import ForbiddenTarget, guarded_session

log = logging.getLogger(__name__)

USER_AGENT = "HeartbeatMonitor/1.0"
EXPIRE_INTERVAL = dt.timedelta(seconds=1)


class PermanentDeliveryError(Exception):
    """A failure that retrying will not fix (4xx other than 429, bad configuration)."""

    def __init__(self, message: str, *, http_status: int | None = None):
        super().__init__(message)
        self.http_status = http_status


# --- Writing alerts (inside the caller's transaction) ---------------------------------------

def build_payload(event: str, alert_uuid: str, application: Application | None,
                  incident: Incident | None, now: dt.datetime) -> dict[str, Any]:
    """The webhook JSON of §6.4."""
    payload: dict[str, Any] = {"event": event, "alert_id": alert_uuid, "occurred_at": utc_iso(now)}
    if application is not None:
        payload["application"] = {
            "uuid": application.uuid, "name": application.name, "status": application.status,
            "last_heartbeat_at": utc_iso(application.last_heartbeat_at)}
    if incident is not None:
        payload["incident"] = {
            "id": incident.id, "started_at": utc_iso(incident.started_at),
            "resolved_at": utc_iso(incident.resolved_at), "reason": incident.reason}
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


# --- Sending -----------------------------------------------------------------------------------

def _retry_after_seconds(value: str | None, now: dt.datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (moment - now).total_seconds())


class Senders:
    """Sends one alert to one channel; raises TransientError or PermanentDeliveryError."""

    def __init__(self, settings: Settings, clock: Any):
        self.settings = settings
        self.clock = clock
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = guarded_session(self.settings.ALLOW_PRIVATE_WEBHOOK_TARGETS)
            session.headers["User-Agent"] = USER_AGENT
            self._local.session = session
        return session

    def send(self, channel: Channel, alert_uuid: str, payload: dict[str, Any]) -> int | None:
        """Deliver; returns the HTTP status (None for email)."""
        if channel.kind == "webhook":
            return self._post(channel, alert_uuid, payload, signed=True)
        if channel.kind == "slack":
            return self._post(channel, alert_uuid, slack_message(payload), signed=False)
        if channel.kind == "email":
            self._send_email(channel, alert_uuid, payload)
            return None
        raise PermanentDeliveryError(f"unknown channel kind {channel.kind!r}")

    def _post(self, channel: Channel, alert_uuid: str, body_json: dict[str, Any],
              signed: bool) -> int:
        body = json.dumps(body_json, separators=(",", ":")).encode()
        headers = {**(channel.headers or {}), "Content-Type": "application/json",
                   "Idempotency-Key": alert_uuid}
        if signed and channel.secret:
            digest = hmac.new(channel.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Signature"] = f"sha256={digest}"
        timeout = self.settings.ALERT_TIMEOUT_SECONDS
        try:
            response = self._session().post(channel.url, data=body, headers=headers,
                                             timeout=(min(timeout, 5.0), timeout),
                                             allow_redirects=False)
        except ForbiddenTarget as error:
            raise PermanentDeliveryError(f"refused: {error}") from error
        except requests.Timeout as error:
            raise TransientError(f"timed out after {timeout:g} s") from error
        except requests.RequestException as error:
            raise TransientError(f"connection failed: {type(error).__name__}") from error
        status = response.status_code
        response.close()
        if 200 <= status < 300:
            return status
        if status == 429 or status >= 500:
            retry_after = _retry_after_seconds(response.headers.get("Retry-After"),
                                               self.clock.now())
            raise TransientError(f"HTTP {status}", retry_after_seconds=retry_after,
                                 http_status=status)
        if 300 <= status < 400:
            raise PermanentDeliveryError(f"HTTP {status}: redirects are not followed",
                                         http_status=status)
        raise PermanentDeliveryError(f"HTTP {status}", http_status=status)

    def _send_email(self, channel: Channel, alert_uuid: str, payload: dict[str, Any]) -> None:
        if not self.settings.SMTP_URL:
            raise PermanentDeliveryError("SMTP_URL is not configured")
        target = urlsplit(self.settings.SMTP_URL)
        message = EmailMessage()
        message["Subject"] = email_subject(payload)
        message["From"] = self.settings.SMTP_FROM
        message["To"] = ", ".join(channel.addresses or [])
        message["Message-ID"] = f"<{alert_uuid}@heartbeat-monitor>"
        message["X-Idempotency-Key"] = alert_uuid
        message.set_content(email_body(payload))
        smtp_class = smtplib.SMTP_SSL if target.scheme == "smtps" else smtplib.SMTP
        try:
            with smtp_class(target.hostname or "localhost", target.port or 25,
                            timeout=self.settings.SMTP_TIMEOUT_SECONDS) as smtp:
                if target.username:
                    smtp.login(unquote(target.username), unquote(target.password or ""))
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            if all(code >= 500 for code in codes):
                raise PermanentDeliveryError(f"recipients refused: {codes}") from error
            raise TransientError(f"recipients deferred: {codes}") from error
        except smtplib.SMTPResponseException as error:
            if error.smtp_code >= 500:
                raise PermanentDeliveryError(f"SMTP {error.smtp_code}") from error
            raise TransientError(f"SMTP {error.smtp_code}") from error
        except (smtplib.SMTPException, OSError) as error:
            raise TransientError(f"SMTP connection failed: {type(error).__name__}") from error


def _headline(payload: dict[str, Any]) -> str:
    event = payload.get("event", "")
    name = payload.get("application", {}).get("name", "")
    if event == "application.down":
        reason = payload.get("incident", {}).get("reason", "")
        return f"{name} is DOWN ({reason})"
    if event == "application.up":
        return f"{name} is back UP"
    if event == "service.error_rate_high":
        return "Heartbeat Monitor: error rate is high"
    return f"Heartbeat Monitor: {event}"


def slack_message(payload: dict[str, Any]) -> dict[str, Any]:
    return {"text": _headline(payload), "attachments": [
        {"text": json.dumps(payload, indent=2), "fallback": _headline(payload)}]}


def email_subject(payload: dict[str, Any]) -> str:
    return _headline(payload)


def email_body(payload: dict[str, Any]) -> str:
    return f"{_headline(payload)}\n\n{json.dumps(payload, indent=2)}\n"


# --- The delivery worker -------------------------------------------------------------------

class Deliverer:
    """Claims due alerts and sends them, a bulkhead per channel kind, a breaker per channel."""

    def __init__(self, app: Flask, settings: Settings, clock: Any, breakers: BreakerRegistry):
        self.app = app
        self.settings = settings
        self.clock = clock
        self.breakers = breakers
        self.senders = Senders(settings, clock)
        self.per_kind = settings.ALERT_CONCURRENCY_PER_KIND
        self.per_channel = max(1, min(settings.ALERT_CONCURRENCY_PER_CHANNEL, self.per_kind))
        self.lease = dt.timedelta(seconds=settings.ALERT_TIMEOUT_SECONDS * 3 + 30)
        self._pools = {kind: ThreadPoolExecutor(self.per_kind, thread_name_prefix=f"alert-{kind}")
                       for kind in CHANNEL_KINDS}
        self._lock = threading.Condition()
        # Alerts this process is sending now, with their channel and kind: the bulkhead counts
        # come from here, and none is claimed again meanwhile, even when its lease has run out
        # (a stalled send, or a test clock that jumps).
        self._in_flight: dict[int, tuple[int, str]] = {}
        self._expired_at: dt.datetime | None = None

    def breaker_for(self, channel_id: int):
        return self.breakers.get(f"channel:{channel_id}")

    # One pass: expire (at most once a second), claim what has a free slot, start sending it.
    def dispatch_due(self) -> int:
        now = self.clock.now()
        with self.app.app_context():
            # Expiring scans every pending alert; a pass runs after each delivery. The claim
            # skips expired alerts itself, so marking them dead may wait a second.
            last = self._expired_at
            if last is None or not last <= now < last + EXPIRE_INTERVAL:
                expire_alerts(now)
                self._expired_at = now
            claimed = self._claim(now)
        for alert_id, _, kind, lease in claimed:
            self._pools[kind].submit(self._deliver_claimed, alert_id, lease)
        return len(claimed)

    def _claim(self, now: dt.datetime) -> list[tuple[int, int, str, dt.datetime]]:
        with self._lock:
            in_flight = dict(self._in_flight)
        kind_busy = collections.Counter(kind for _, kind in in_flight.values())
        channel_busy = collections.Counter(channel_id for channel_id, _ in in_flight.values())
        free = {kind: self.per_kind - kind_busy[kind] for kind in CHANNEL_KINDS}
        kinds = [kind for kind, slots in free.items() if slots > 0]
        if not kinds:
            return []
        rows = db.session.execute(
            select(Alert.id, Alert.channel_id, Channel.kind)
            .join(Channel, Channel.id == Alert.channel_id)
            .where(Alert.state == "pending", Alert.next_attempt_at <= now,
                   Alert.expires_at > now,
                   or_(Alert.claimed_until.is_(None), Alert.claimed_until < now),
                   Channel.kind.in_(kinds))
            .order_by(Alert.next_attempt_at, Alert.id)
            .limit(sum(free[kind] for kind in kinds) * 4)
            .with_for_update(skip_locked=True, of=Alert)).all()
        chosen = []
        for alert_id, channel_id, kind in rows:
            if alert_id in in_flight:
                continue
            breaker = self.breaker_for(channel_id)
            limit = 1 if breaker.state != "closed" else self.per_channel
            if breaker.state == STATE_OPEN or free[kind] <= 0 \
                    or channel_busy[channel_id] >= limit:
                continue
            free[kind] -= 1
            channel_busy[channel_id] += 1
            chosen.append((alert_id, channel_id, kind))
        if not chosen:
            db.session.rollback()
            return []
        lease = now + self.lease
        db.session.execute(update(Alert).where(Alert.id.in_([c[0] for c in chosen]))
                           .values(claimed_until=lease))
        db.session.commit()
        with self._lock:
            for alert_id, channel_id, kind in chosen:
                self._in_flight[alert_id] = (channel_id, kind)
        return [(alert_id, channel_id, kind, lease) for alert_id, channel_id, kind in chosen]

    def _deliver_claimed(self, alert_id: int, lease: dt.datetime) -> None:
        try:
            with self.app.app_context():
                self._deliver(alert_id, lease)
        except Exception as error:  # the worker must survive anything, e.g. a database outage
            log.warning("alert delivery pass failed: %s", type(error).__name__)
            with self.app.app_context():
                record_error(error, 500)
        finally:
            with self._lock:
                del self._in_flight[alert_id]
                self._lock.notify_all()

    def _deliver(self, alert_id: int, lease: dt.datetime) -> None:
        alert = db.session.get(Alert, alert_id)
        if alert is None or alert.claimed_until != lease or alert.state != "pending":
            return
        channel = alert.channel
        breaker = self.breaker_for(channel.id)
        if not breaker.allow():  # opened meanwhile, or another call is the half-open probe
            wait = max(breaker.open_remaining, 1.0)
            _finish(alert, lease, next_attempt_at=self.clock.now() + dt.timedelta(seconds=wait))
            return
        started = time.perf_counter()
        http_status, error_text, retry_after = None, None, None
        try:
            http_status = self.senders.send(channel, alert.uuid, alert.payload)
            outcome = "delivered"
            breaker.record_success()
        except TransientError as error:
            outcome, error_text = "transient_error", str(error)
            http_status, retry_after = error.http_status, error.retry_after_seconds
            breaker.record_failure(error)
        except PermanentDeliveryError as error:
            outcome, error_text, http_status = "permanent_error", str(error), error.http_status
            breaker.record_neutral()
        except Exception as error:  # a bug in a sender: keep the alert, retry later
            outcome, error_text = "transient_error", f"internal error: {type(error).__name__}"
            breaker.record_neutral()
            record_error(error, 500)
        duration = time.perf_counter() - started
        metrics.ALERT_DELIVERY_ATTEMPTS.labels(channel_kind=channel.kind, outcome=outcome).inc()
        metrics.ALERT_DELIVERY_SECONDS.observe(duration)
        now = self.clock.now()
        db.session.add(DeliveryAttempt(alert_id=alert.id, attempted_at=now, outcome=outcome,
                                       http_status=http_status, error=error_text,
                                       duration_ms=int(duration * 1000)))
        attempts = alert.attempt_count + 1
        if outcome == "delivered":
            _finish(alert, lease, state="delivered", delivered_at=now, attempt_count=attempts,
                    last_error=None)
        elif outcome == "permanent_error":
            _finish(alert, lease, state="failed", attempt_count=attempts, last_error=error_text)
        elif now >= alert.expires_at:
            _finish(alert, lease, state="dead", attempt_count=attempts, last_error=error_text)
        else:
            delay = backoff_seconds(attempts, retry_after)
            _finish(alert, lease, attempt_count=attempts, last_error=error_text,
                    next_attempt_at=now + dt.timedelta(seconds=delay))

    def drain(self, timeout_seconds: float = 60.0) -> None:
        """Deliver until nothing is due and nothing is in flight (for tests and shutdown)."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            with self._lock:
                was_busy = bool(self._in_flight)
            started = self.dispatch_due()
            with self._lock:
                busy = bool(self._in_flight)
                if busy:
                    self._lock.wait(0.05)
            # A delivery that finished during the pass (a probe closing its breaker) may have
            # freed alerts the pass skipped: done only after a pass that began with none busy.
            if not started and not busy and not was_busy:
                return

    def run(self, stop: threading.Event, idle_seconds: float = 0.5) -> None:
        """Deliver until `stop` is set; never dies of a failed pass."""
        while not stop.is_set():
            try:
                started = self.dispatch_due()
            except Exception as error:
                log.warning("alert dispatch failed: %s", type(error).__name__)
                started = 0
                stop.wait(idle_seconds)
            with self._lock:
                if not started:
                    self._lock.wait(idle_seconds)

    def wake(self) -> None:
        with self._lock:
            self._lock.notify_all()

    def shutdown(self, wait: bool = True) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=wait, cancel_futures=True)


def _finish(alert: Alert, lease: dt.datetime, **values: Any) -> None:
    """Record the outcome only if our claim still holds (compare-and-set on the lease)."""
    db.session.execute(update(Alert).where(Alert.id == alert.id, Alert.claimed_until == lease)
                       .values(claimed_until=None, **values))
    db.session.commit()


def expire_alerts(now: dt.datetime) -> int:
    """Alerts still undelivered past their age limit become dead."""
    result = db.session.execute(
        update(Alert).where(Alert.state == "pending", Alert.expires_at <= now,
                            or_(Alert.claimed_until.is_(None), Alert.claimed_until < now))
        .values(state="dead", claimed_until=None))
    db.session.commit()
    return result.rowcount


# --- The alerts API ------------------------------------------------------------------------

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
    query = select(Alert).order_by(Alert.id.desc()).limit(limit + 1)
    if state:
        query = query.where(Alert.state == state)
    if cursor:
        (before_id,) = decode_cursor(cursor, 1)
        query = query.where(Alert.id < int(before_id))
    rows = list(db.session.execute(query).scalars())
    next_cursor = encode_cursor([rows[limit - 1].id]) if len(rows) > limit else None
    return rows[:limit], next_cursor


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
