"""Alert delivery: claims due alerts from the outbox and sends them, at least once.

Delivery claims due alerts (`FOR UPDATE SKIP LOCKED` on PostgreSQL) with a lease: for each free
slot of a per-kind bulkhead, a batch of one channel's alerts, which the slot sends in turn
through the channel's transport (transports/) and circuit breaker, recording every attempt
(delivery_outcomes.py) before its next send. A transient failure re-queues the alert with
jittered backoff (honoring Retry-After), never longer than the breaker's recovery time; a
permanent one marks it `failed`; an alert older than
ALERT_MAX_AGE_SECONDS becomes `dead`. A process that dies between sending and recording stops
renewing its liveness (delivery_liveness.py), so within 15 s another process claims the alert
and sends it again: receivers deduplicate by the `Idempotency-Key` header (the alert's UUID).
A channel whose breaker is open is left out of the claim; its probe goes once per recovery
period, and its success makes every alert waiting for the channel due at once (SPEC §6.4a).
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask
from sqlalchemy import select, update

from config import Settings
from database import db
from delivery_liveness import Liveness, claim_is_free
from delivery_outcomes import Outcome, OutcomeWriter
from models import Alert, Channel
from monitoring import metrics
from monitoring.error_tracking import record_error
from outbox import expire_alerts
from transports import CHANNEL_KINDS, Destination, Transports, transient
from utils.circuit_breaker import (
    STATE_CLOSED,
    STATE_HALF_OPEN,
    STATE_OPEN,
    Breaker,
    BreakerRegistry,
)
from utils.clock import Clock
from utils.retry import backoff_seconds

log = logging.getLogger(__name__)

EXPIRE_INTERVAL = dt.timedelta(seconds=1)
SLOT_BATCH = 16  # alerts of one channel a delivery slot sends in turn before it is given back
# A slot has one batch sending and one claimed, waiting to start the moment the slot comes free
# (no wait for the next claim); the per-channel limit counts both.
BATCHES_PER_SLOT = 2


def channel_breaker_name(channel_id: int) -> str:
    """The name of a channel's breaker, as /health/dependencies and /metrics show it."""
    return f"channel:{channel_id}"


def channel_of_breaker(breaker_name: str) -> int:
    return int(breaker_name.removeprefix("channel:"))


@dataclasses.dataclass(frozen=True)
class ClaimedAlert:
    id: int
    uuid: str
    payload: dict
    attempt_count: int
    expires_at: dt.datetime
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class Batch:
    """Alerts of one channel, oldest first, that one delivery slot sends under one lease."""

    destination: Destination
    alerts: list[ClaimedAlert]
    lease: dt.datetime


class Deliverer:
    """Claims due alerts and sends them, a bulkhead per channel kind, a breaker per channel.

    A pass claims, for each free slot, up to SLOT_BATCH due alerts of one channel; the slot
    sends them in turn and stops at the first that is not delivered.
    """

    def __init__(self, app: Flask, settings: Settings, clock: Clock, breakers: BreakerRegistry,
                 transports: Transports):
        self.app = app
        self.settings = settings
        self.clock = clock
        self.breakers = breakers
        self.transports = transports
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
        self.outcomes = OutcomeWriter(app, self._release)
        self.liveness = Liveness()
        self._stopping = False
        self._expired_at: dt.datetime | None = None
        self._pass_wanted = threading.Event()  # a slot came free, or wake() was called

    def breaker_for(self, channel_id: int) -> Breaker:
        return self.breakers.get(channel_breaker_name(channel_id))

    def dispatch_due(self) -> int:
        """One pass: write outcomes left over, expire (at most once a second), claim what has a
        free slot, start sending it. Returns the number of slots started."""
        self.outcomes.flush()
        now = self.clock.now()
        with self.app.app_context():
            self.liveness.renew(now)  # before claiming: no claim of ours looks abandoned
            # Expiring scans every pending alert. The claim skips expired alerts itself, so
            # marking them dead may wait a second.
            last = self._expired_at
            if last is None or not last <= now < last + EXPIRE_INTERVAL:
                expire_alerts(now)
                self._expired_at = now
            batches = self._claim(now)
        for batch in batches:
            self._pools[batch.destination.kind].submit(self._run_batch, batch)
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
        due = (select(Alert.id, Alert.channel_id, Channel.kind)
               .join(Channel, Channel.id == Alert.channel_id)
               .where(Alert.state == "pending", Alert.next_attempt_at <= now,
                      Alert.expires_at > now,
                      claim_is_free(now), Channel.kind.in_(kinds))
               .order_by(Alert.next_attempt_at, Alert.id))
        # A channel whose breaker is not closed is left out of the claim (SPEC §6.4a: while
        # it is open only its probe goes), so a long queue for a failing destination cannot
        # fill the claim and hold up healthy channels; a half-open one gets its probe below.
        held_back = {channel_of_breaker(name): breaker
                     for name, breaker in self.breakers.not_closed().items()}
        query = due.where(Alert.channel_id.notin_(list(held_back))) if held_back else due
        rows = db.session.execute(
            # Enough rows to fill a batch even when the queue interleaves many channels.
            query.limit(self.per_kind * len(kinds) * SLOT_BATCH)
            .with_for_update(skip_locked=True, of=Alert)).all()
        for held_id, breaker in held_back.items():
            if breaker.state == STATE_HALF_OPEN and not breaker.probing:
                rows += db.session.execute(self._probe_query(held_id, now)).all()
        new_slots: dict[int, list[list[int]]] = collections.defaultdict(list)
        breaker_states: dict[int, str] = {}
        for alert_id, channel_id, kind in rows:
            if alert_id in claimed:
                continue
            breaker_state = breaker_states.get(channel_id)
            if breaker_state is None:
                breaker_state = breaker_states[channel_id] = self.breaker_for(channel_id).state
            if breaker_state == STATE_OPEN:
                continue
            # A breaker that is not closed lets one probe through: one slot, one alert.
            limit, size = (self.per_channel, SLOT_BATCH) if breaker_state == STATE_CLOSED \
                else (1, 1)
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
        db.session.execute(update(Alert).where(Alert.id.in_(chosen)).values(
            claimed_until=lease, claimed_by=self.liveness.process_id))
        details = db.session.execute(
            select(Alert.id, Alert.uuid, Alert.payload, Alert.attempt_count, Alert.expires_at,
                   Alert.created_at, Channel.id, Channel.kind, Channel.url, Channel.headers,
                   Channel.secret, Channel.addresses)
            .join(Channel, Channel.id == Alert.channel_id).where(Alert.id.in_(chosen))).all()
        db.session.commit()
        alerts, destinations = {}, {}
        for row in details:
            alerts[row[0]] = ClaimedAlert(*row[:6])
            destinations[row[6]] = Destination(*row[6:])
        batches = [Batch(destinations[channel_id], [alerts[alert_id] for alert_id in slot], lease)
                   for channel_id, slots_of in new_slots.items() for slot in slots_of]
        with self._lock:
            self._claimed.update(chosen)
            for batch in batches:
                self._slots[id(batch)] = (batch.destination.id, batch.destination.kind)
        return batches

    @staticmethod
    def _probe_query(channel_id: int, now: dt.datetime):
        """The channel's oldest waiting alert, due or not: the probe is the channel's, once
        per recovery period, even while every alert waits out a long Retry-After."""
        return (select(Alert.id, Alert.channel_id, Channel.kind)
                .join(Channel, Channel.id == Alert.channel_id)
                .where(Alert.channel_id == channel_id, Alert.state == "pending",
                       Alert.expires_at > now, claim_is_free(now))
                .order_by(Alert.next_attempt_at, Alert.id).limit(1)
                .with_for_update(skip_locked=True, of=Alert))

    def _run_batch(self, batch: Batch) -> None:
        pending = collections.deque(batch.alerts)
        release: dict[str, Any] = {}  # what an alert left unsent gets
        try:
            while pending and not self._stopping:
                if self.clock.now() + self._send_budget > batch.lease:
                    break
                breaker = self.breaker_for(batch.destination.id)
                if not breaker.allow():  # opened meanwhile, or another call is the probe
                    wait = max(breaker.open_remaining, 1.0)
                    release = {"next_attempt_at": self.clock.now() + dt.timedelta(seconds=wait)}
                    break
                probe = breaker.state != STATE_CLOSED
                outcome = self._send(batch.destination, pending[0], batch.lease, breaker)
                pending.popleft()
                if not self.outcomes.record([outcome]) \
                        or outcome.values.get("state") != "delivered":
                    break
                if probe:
                    self._make_waiting_alerts_due(batch.destination.id)
        except Exception as error:  # the slot must survive anything
            log.warning("alert delivery failed: %s", type(error).__name__)
            with self.app.app_context():
                record_error(error, 500)
        finally:
            if pending:
                self.outcomes.record([Outcome(alert.id, batch.lease, release)
                                      for alert in pending])
            with self._lock:
                del self._slots[id(batch)]
                self._lock.notify_all()
            self._pass_wanted.set()

    def _make_waiting_alerts_due(self, channel_id: int) -> None:
        """The channel's probe got through: every alert waiting for it is due now (§6.4a)."""
        now = self.clock.now()
        with self.app.app_context():
            db.session.execute(update(Alert).where(
                Alert.channel_id == channel_id, Alert.state == "pending",
                Alert.next_attempt_at > now).values(next_attempt_at=now))
            db.session.commit()

    def _send(self, destination: Destination, alert: ClaimedAlert, lease: dt.datetime,
              breaker: Breaker) -> Outcome:
        attempt = self.transports.attempt(destination, alert.uuid, alert.payload)
        if attempt.unexpected is not None:
            breaker.record_neutral()
            with self.app.app_context():
                record_error(attempt.unexpected, 500)
        elif attempt.outcome == "delivered":
            breaker.record_success()
        elif attempt.outcome == "transient_error":
            breaker.record_failure(transient(attempt.error or ""))
        else:
            breaker.record_neutral()
        metrics.ALERT_DELIVERY_ATTEMPTS.labels(channel_kind=destination.kind,
                                               outcome=attempt.outcome).inc()
        metrics.ALERT_DELIVERY_SECONDS.observe(attempt.duration_seconds)
        now = self.clock.now()
        attempt_row = {"alert_id": alert.id, "attempted_at": now, "outcome": attempt.outcome,
                       "http_status": attempt.http_status, "error": attempt.error,
                       "duration_ms": int(attempt.duration_seconds * 1000)}
        attempts = alert.attempt_count + 1
        if attempt.outcome == "delivered":
            values = {"state": "delivered", "delivered_at": now, "last_error": None}
            metrics.ALERT_DELIVERY_LAG_SECONDS.observe(
                max(0.0, (now - alert.created_at).total_seconds()))
        elif attempt.outcome == "permanent_error":
            values = {"state": "failed", "last_error": attempt.error}
        elif now >= alert.expires_at:
            values = {"state": "dead", "last_error": attempt.error}
        else:
            delay = backoff_seconds(attempts, attempt.retry_after_seconds,
                                    cap_seconds=self.settings.BREAKER_RECOVERY_SECONDS)
            values = {"last_error": attempt.error,
                      "next_attempt_at": now + dt.timedelta(seconds=delay)}
        return Outcome(alert.id, lease, {**values, "attempt_count": attempts}, attempt_row)

    def _release(self, alert_ids: set[int]) -> None:
        """Outcomes written: these alerts may be claimed again."""
        with self._lock:
            self._claimed.difference_update(alert_ids)
            self._lock.notify_all()

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
            self.outcomes.flush()  # if this fails, the leases run out and the alerts go again
        self.outcomes.close()
