"""Alerts: written as an outbox with the change they report, then delivered at least once.

Delivery claims due alerts (`FOR UPDATE SKIP LOCKED` on PostgreSQL) with a lease: for each free
slot of a per-kind bulkhead, a batch of one channel's alerts, which the slot sends in turn
through the channel's circuit breaker, recording every attempt before its next send.
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
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import urllib3
from flask import Flask
from sqlalchemy import Connection, Engine, bindparam, or_, select, text, update

from config import Settings
from database import db, is_connection_error, utc_text
from exceptions import AlertNotFound, Conflict
from models import CHANNEL_KINDS, Alert, Application, Channel, DeliveryAttempt, Incident, new_uuid
from monitoring import metrics
from monitoring.error_tracking import record_error
from utils.circuit_breaker import STATE_OPEN, BreakerRegistry, TransientError
from utils.clock import utc_iso
from utils.pagination import decode_cursor, encode_cursor
from utils.retry import backoff_seconds
from utils.ssrf_guard import ForbiddenTarget, guarded_pool_manager
from utils.webhook_headers import deliverable_headers

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

    def _pools(self) -> urllib3.PoolManager:
        pools = getattr(self._local, "pools", None)
        if pools is None:  # one per thread: each keeps its own connections alive
            pools = self._local.pools = guarded_pool_manager(
                self.settings.ALLOW_PRIVATE_WEBHOOK_TARGETS)
        return pools

    def send(self, channel: Channel | Target, alert_uuid: str,
             payload: dict[str, Any]) -> int | None:
        """Deliver; returns the HTTP status (None for email)."""
        if channel.kind == "webhook":
            return self._post(channel, alert_uuid, payload, signed=True)
        if channel.kind == "slack":
            return self._post(channel, alert_uuid, slack_message(payload), signed=False)
        if channel.kind == "email":
            self._send_email(channel, alert_uuid, payload)
            return None
        raise PermanentDeliveryError(f"unknown channel kind {channel.kind!r}")

    # urllib3 directly: requests costs twice its CPU per post, and delivery is bound by CPU.
    def _post(self, channel: Channel | Target, alert_uuid: str, body_json: dict[str, Any],
              signed: bool) -> int:
        body = json.dumps(body_json, separators=(",", ":")).encode()
        headers = {**deliverable_headers(channel.headers), "User-Agent": USER_AGENT,
                   "Content-Type": "application/json", "Idempotency-Key": alert_uuid}
        if signed and channel.secret:
            digest = hmac.new(channel.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Signature"] = f"sha256={digest}"
        timeout = self.settings.ALERT_TIMEOUT_SECONDS
        try:
            response = self._pools().request(
                "POST", channel.url, body=body, headers=headers, redirect=False, retries=False,
                timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout))
        except ForbiddenTarget as error:
            raise PermanentDeliveryError(f"refused: {error}") from error
        except urllib3.exceptions.NewConnectionError as error:  # a TimeoutError subclass, too
            raise TransientError(f"connection failed: {type(error).__name__}") from error
        except urllib3.exceptions.TimeoutError as error:
            raise TransientError(f"timed out after {timeout:g} s") from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise TransientError(f"connection failed: {type(error).__name__}") from error
        status = response.status
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

    def _send_email(self, channel: Channel | Target, alert_uuid: str,
                    payload: dict[str, Any]) -> None:
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

SLOT_BATCH = 16  # alerts of one channel a delivery slot sends in turn before it is given back
# A slot has one batch sending and one claimed, waiting to start the moment the slot comes free
# (no wait for the next claim); the per-channel limit counts both.
BATCHES_PER_SLOT = 2


@dataclass(frozen=True)
class Target:
    """What a sender needs of a channel, read in the transaction that claims its alerts."""

    id: int
    kind: str
    url: str | None
    headers: dict | None
    secret: str | None
    addresses: list | None


@dataclass(frozen=True)
class ClaimedAlert:
    id: int
    uuid: str
    payload: dict
    attempt_count: int
    expires_at: dt.datetime


@dataclass(frozen=True)
class Batch:
    """Alerts of one channel, oldest first, that one delivery slot sends under one lease."""

    target: Target
    alerts: list[ClaimedAlert]
    lease: dt.datetime


@dataclass(frozen=True)
class Outcome:
    """What to write for one claimed alert: its new values and the attempt, if one was made."""

    alert_id: int
    lease: dt.datetime
    values: dict[str, Any]
    attempt: dict[str, Any] | None = None


class Deliverer:
    """Claims due alerts and sends them, a bulkhead per channel kind, a breaker per channel.

    A pass claims, for each free slot, up to SLOT_BATCH due alerts of one channel; the slot
    sends them in turn and stops at the first that is not delivered. Each outcome is written,
    together with those of the other slots waiting at that moment (one transaction), before
    the slot sends its next alert.
    """

    def __init__(self, app: Flask, settings: Settings, clock: Any, breakers: BreakerRegistry):
        self.app = app
        self.settings = settings
        self.clock = clock
        self.breakers = breakers
        self.senders = Senders(settings, clock)
        self.per_kind = settings.ALERT_CONCURRENCY_PER_KIND
        self.per_channel = max(1, min(settings.ALERT_CONCURRENCY_PER_CHANNEL, self.per_kind))
        self.lease = dt.timedelta(seconds=settings.ALERT_TIMEOUT_SECONDS * 3 + 30)
        # A slot starts its next alert only while the lease still covers a whole send
        # (connecting and reading each get the timeout).
        self._send_budget = dt.timedelta(seconds=settings.ALERT_TIMEOUT_SECONDS * 2 + 30)
        self._pools = {kind: ThreadPoolExecutor(self.per_kind, thread_name_prefix=f"alert-{kind}")
                       for kind in CHANNEL_KINDS}
        self._lock = threading.Condition()
        self._slots: dict[int, tuple[int, str]] = {}  # id(batch) -> (channel id, kind)
        # Alerts this process has claimed and whose outcome is not written yet: none is claimed
        # again meanwhile, even when its lease has run out (a stalled send, a test clock jump).
        self._claimed: set[int] = set()
        self._outcomes: list[tuple[int, Outcome]] = []  # (ticket, outcome), oldest first
        self._tickets = self._written_ticket = self._failed_ticket = 0
        self._writing = False  # one thread at a time writes, on this connection (PostgreSQL)
        self._engine: Engine | None = None
        self._connection: Connection | None = None
        self._stopping = False
        self._expired_at: dt.datetime | None = None
        self._pass_wanted = threading.Event()  # a slot came free, or wake() was called

    def breaker_for(self, channel_id: int):
        return self.breakers.get(f"channel:{channel_id}")

    # One pass: write outcomes left over, expire (at most once a second), claim what has a free
    # slot, start sending it. Returns the number of slots started.
    def dispatch_due(self) -> int:
        self._flush_outcomes()
        now = self.clock.now()
        with self.app.app_context():
            # Expiring scans every pending alert. The claim skips expired alerts itself, so
            # marking them dead may wait a second.
            last = self._expired_at
            if last is None or not last <= now < last + EXPIRE_INTERVAL:
                expire_alerts(now)
                self._expired_at = now
            batches = self._claim(now)
        for batch in batches:
            self._pools[batch.target.kind].submit(self._run_batch, batch)
        return len(batches)

    def _claim(self, now: dt.datetime) -> list[Batch]:
        with self._lock:
            claimed = set(self._claimed)
            slots = list(self._slots.values())
        kind_busy = collections.Counter(kind for _, kind in slots)
        channel_busy = collections.Counter(channel_id for channel_id, _ in slots)
        free = {kind: BATCHES_PER_SLOT * self.per_kind - kind_busy[kind]
                for kind in CHANNEL_KINDS}
        kinds = [kind for kind, slots_free in free.items() if slots_free > 0]
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
            # Enough rows to fill a batch even when the queue interleaves many channels.
            .limit(self.per_kind * len(kinds) * SLOT_BATCH)
            .with_for_update(skip_locked=True, of=Alert)).all()
        new_slots: dict[int, list[list[int]]] = collections.defaultdict(list)
        breaker_states: dict[int, str] = {}
        for alert_id, channel_id, kind in rows:
            if alert_id in claimed:
                continue
            state = breaker_states.get(channel_id)
            if state is None:
                state = breaker_states[channel_id] = self.breaker_for(channel_id).state
            if state == STATE_OPEN:
                continue
            # A breaker that is not closed lets one probe through: one slot, one alert.
            limit, size = (self.per_channel, SLOT_BATCH) if state == "closed" else (1, 1)
            if free[kind] > 0 and channel_busy[channel_id] < limit:
                free[kind] -= 1
                channel_busy[channel_id] += 1
                new_slots[channel_id].append([alert_id])
                continue
            fillable = [slot for slot in new_slots[channel_id] if len(slot) < size]
            if fillable:
                min(fillable, key=len).append(alert_id)
        chosen = [alert_id for slots_of in new_slots.values() for slot in slots_of
                  for alert_id in slot]
        if not chosen:
            db.session.rollback()
            return []
        lease = now + self.lease
        db.session.execute(update(Alert).where(Alert.id.in_(chosen)).values(claimed_until=lease))
        details = db.session.execute(
            select(Alert.id, Alert.uuid, Alert.payload, Alert.attempt_count, Alert.expires_at,
                   Channel.id, Channel.kind, Channel.url, Channel.headers, Channel.secret,
                   Channel.addresses)
            .join(Channel, Channel.id == Alert.channel_id).where(Alert.id.in_(chosen))).all()
        db.session.commit()
        alerts, targets = {}, {}
        for row in details:
            alerts[row[0]] = ClaimedAlert(*row[:5])
            targets[row[5]] = Target(*row[5:])
        batches = [Batch(targets[channel_id], [alerts[alert_id] for alert_id in slot], lease)
                   for channel_id, slots_of in new_slots.items() for slot in slots_of]
        with self._lock:
            self._claimed.update(chosen)
            for batch in batches:
                self._slots[id(batch)] = (batch.target.id, batch.target.kind)
        return batches

    def _run_batch(self, batch: Batch) -> None:
        pending = collections.deque(batch.alerts)
        release: dict[str, Any] = {}  # what an alert left unsent gets
        try:
            while pending and not self._stopping:
                if self.clock.now() + self._send_budget > batch.lease:
                    break
                breaker = self.breaker_for(batch.target.id)
                if not breaker.allow():  # opened meanwhile, or another call is the probe
                    wait = max(breaker.open_remaining, 1.0)
                    release = {"next_attempt_at": self.clock.now() + dt.timedelta(seconds=wait)}
                    break
                outcome = self._send(batch.target, pending[0], batch.lease, breaker)
                pending.popleft()
                if not self._record([outcome]) or outcome.values.get("state") != "delivered":
                    break
        except Exception as error:  # the slot must survive anything
            log.warning("alert delivery failed: %s", type(error).__name__)
            with self.app.app_context():
                record_error(error, 500)
        finally:
            if pending:
                self._record([Outcome(alert.id, batch.lease, release) for alert in pending])
            with self._lock:
                del self._slots[id(batch)]
                self._lock.notify_all()
            self._pass_wanted.set()

    def _send(self, target: Target, alert: ClaimedAlert, lease: dt.datetime,
              breaker: Any) -> Outcome:
        started = time.perf_counter()
        http_status, error_text, retry_after = None, None, None
        try:
            http_status = self.senders.send(target, alert.uuid, alert.payload)
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
            with self.app.app_context():
                record_error(error, 500)
        duration = time.perf_counter() - started
        metrics.ALERT_DELIVERY_ATTEMPTS.labels(channel_kind=target.kind, outcome=outcome).inc()
        metrics.ALERT_DELIVERY_SECONDS.observe(duration)
        now = self.clock.now()
        attempt = {"alert_id": alert.id, "attempted_at": now, "outcome": outcome,
                   "http_status": http_status, "error": error_text,
                   "duration_ms": int(duration * 1000)}
        attempts = alert.attempt_count + 1
        if outcome == "delivered":
            values = {"state": "delivered", "delivered_at": now, "last_error": None}
        elif outcome == "permanent_error":
            values = {"state": "failed", "last_error": error_text}
        elif now >= alert.expires_at:
            values = {"state": "dead", "last_error": error_text}
        else:
            delay = backoff_seconds(attempts, retry_after)
            values = {"last_error": error_text,
                      "next_attempt_at": now + dt.timedelta(seconds=delay)}
        return Outcome(alert.id, lease, {**values, "attempt_count": attempts}, attempt)

    def _record(self, outcomes: list[Outcome]) -> bool:
        """Queue outcomes; True once they are written, False if writing them failed.

        Outcomes queued by several slots are written in one transaction (group commit) by one
        of the waiting threads. A slot sends its next alert only after its last outcome is
        written, so a crash resends at most the sends in flight.
        """
        with self._lock:
            self._tickets += 1
            ticket = self._tickets
            self._outcomes.extend((ticket, outcome) for outcome in outcomes)
            while True:
                if self._written_ticket >= ticket:
                    return True
                if self._failed_ticket >= ticket:
                    return False
                if not self._writing:
                    self._writing = True
                    break
                self._lock.wait()
        self._write_queued()
        with self._lock:
            return self._written_ticket >= ticket

    def _flush_outcomes(self) -> None:
        """Write outcomes whose write failed before (the database was down)."""
        with self._lock:
            if self._writing or not self._outcomes:
                return
            self._writing = True
        self._write_queued()

    def _write_queued(self) -> None:
        """Write every queued outcome in one transaction; the caller holds the writing role.

        Outcomes that cannot be written because the database is away stay queued, their
        alerts still claimed by this process, and the next pass writes them.
        """
        with self._lock:
            queued, self._outcomes = self._outcomes, []
        last_ticket = max((ticket for ticket, _ in queued), default=0)
        kept: list[tuple[int, Outcome]] = []
        try:
            self._write([outcome for _, outcome in queued])
        except Exception as error:
            if is_connection_error(error):
                kept = queued
            else:  # one the database refuses (its alert deleted meanwhile) must not block all
                kept = self._write_one_by_one(queued)
            if kept:
                log.warning("recording %d alert outcomes failed, kept to retry: %s",
                            len(kept), type(error).__name__)
        kept_ids = {outcome.alert_id for _, outcome in kept}
        with self._lock:
            self._outcomes[:0] = kept
            if kept:
                self._failed_ticket = last_ticket
            else:
                self._written_ticket = max(self._written_ticket, last_ticket)
            self._claimed.difference_update(outcome.alert_id for _, outcome in queued
                                            if outcome.alert_id not in kept_ids)
            self._writing = False
            self._lock.notify_all()

    def _write_one_by_one(self, queued: list[tuple[int, Outcome]]) -> list[tuple[int, Outcome]]:
        """Write each outcome alone; drop those refused, return those kept (database away)."""
        for index, (_, outcome) in enumerate(queued):
            try:
                self._write([outcome])
            except Exception as error:
                if is_connection_error(error):
                    return queued[index:]
                log.warning("dropped the outcome of alert %d, refused by the database: %s",
                            outcome.alert_id, type(error).__name__)
                with self.app.app_context():
                    record_error(error, 500)
        return []

    def _write(self, outcomes: list[Outcome]) -> None:
        if self._engine is None:
            with self.app.app_context():
                self._engine = db.engine
        if self._engine.dialect.name != "postgresql":
            with self.app.app_context():
                write_outcomes(outcomes)
            return
        try:
            if self._connection is None:
                self._connection = self._engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT")
            write_outcomes_postgres(self._connection, outcomes)
        except Exception:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.invalidate()
            raise

    def _busy(self) -> bool:
        with self._lock:  # reentrant: drain() asks while holding it
            return bool(self._slots or self._claimed)

    def drain(self, timeout_seconds: float = 60.0) -> None:
        """Deliver until nothing is due and nothing is in flight (for tests and shutdown)."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            was_busy = self._busy()
            started = self.dispatch_due()
            with self._lock:
                busy = self._busy()
                if busy:
                    self._lock.wait(0.05)
            # A delivery that finished during the pass (a probe closing its breaker) may have
            # freed alerts the pass skipped: done only after a pass that began with none busy.
            if not started and not busy and not was_busy:
                return

    def run(self, stop: threading.Event, idle_seconds: float = 0.5) -> None:
        """Deliver until `stop` is set; never dies of a failed pass."""
        while not stop.is_set():
            self._pass_wanted.clear()
            try:
                self.dispatch_due()
            except Exception as error:
                log.warning("alert dispatch failed: %s", type(error).__name__)
                stop.wait(idle_seconds)
            # A pass fills every free slot it can; the next is due when a slot comes free.
            self._pass_wanted.wait(idle_seconds)

    def wake(self) -> None:
        self._pass_wanted.set()
        with self._lock:
            self._lock.notify_all()

    def shutdown(self, wait: bool = True) -> None:
        """Stop starting sends: slots give back their unsent alerts, outcomes are written."""
        self._stopping = True
        for pool in self._pools.values():
            # A batch still waiting for its slot runs now and only gives its alerts back, so
            # they need not wait for their lease to run out after a restart.
            pool.shutdown(wait=wait)
        if wait:
            self._flush_outcomes()  # if this fails, the leases run out and the alerts go again
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def write_outcomes(outcomes: list[Outcome]) -> None:
    """Record outcomes only where our claim still holds (compare-and-set on the lease)."""
    attempts = [outcome.attempt for outcome in outcomes if outcome.attempt]
    if attempts:
        db.session.execute(DeliveryAttempt.__table__.insert(), attempts)
    alerts = Alert.__table__
    by_columns: dict[frozenset, list[dict[str, Any]]] = collections.defaultdict(list)
    for outcome in outcomes:
        by_columns[frozenset(outcome.values)].append(
            {"claimed_id": outcome.alert_id, "claimed_lease": outcome.lease,
             "claimed_until": None, **outcome.values})
    for params in by_columns.values():  # SET takes the parameters' column names
        db.session.execute(alerts.update().where(alerts.c.id == bindparam("claimed_id"),
                                                 alerts.c.claimed_until == bindparam(
                                                     "claimed_lease")), params)
    db.session.commit()


# The same in one statement, for PostgreSQL: one round trip on the writer's own connection.
WRITE_OUTCOMES = text("""
WITH outcome AS (
    SELECT * FROM json_to_recordset(CAST(:outcomes AS json)) AS o(
        id integer, lease timestamp, state varchar, attempt_count integer, set_error boolean,
        last_error text, delivered_at timestamp, next_attempt_at timestamp)
), updated AS (
    UPDATE alerts AS a SET claimed_until = NULL,
        state = COALESCE(o.state, a.state),
        attempt_count = COALESCE(o.attempt_count, a.attempt_count),
        last_error = CASE WHEN o.set_error THEN o.last_error ELSE a.last_error END,
        delivered_at = COALESCE(o.delivered_at, a.delivered_at),
        next_attempt_at = COALESCE(o.next_attempt_at, a.next_attempt_at)
    FROM outcome AS o WHERE a.id = o.id AND a.claimed_until = o.lease
)
INSERT INTO delivery_attempts (alert_id, attempted_at, outcome, http_status, error, duration_ms)
SELECT * FROM json_to_recordset(CAST(:attempts AS json)) AS d(
    alert_id integer, attempted_at timestamp, outcome varchar, http_status integer, error text,
    duration_ms integer)
""")


def write_outcomes_postgres(connection: Connection, outcomes: list[Outcome]) -> None:
    """write_outcomes in one statement, on a connection in autocommit."""
    rows = [{"id": outcome.alert_id, "lease": utc_text(outcome.lease),
             "state": outcome.values.get("state"),
             "attempt_count": outcome.values.get("attempt_count"),
             "set_error": "last_error" in outcome.values,
             "last_error": outcome.values.get("last_error"),
             "delivered_at": utc_text(outcome.values.get("delivered_at")),
             "next_attempt_at": utc_text(outcome.values.get("next_attempt_at"))}
            for outcome in outcomes]
    attempts = [{**outcome.attempt, "attempted_at": utc_text(outcome.attempt["attempted_at"])}
                for outcome in outcomes if outcome.attempt]
    connection.execute(WRITE_OUTCOMES, {"outcomes": json.dumps(rows),
                                        "attempts": json.dumps(attempts)})


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
