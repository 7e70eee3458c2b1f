"""§6.4a: once a destination recovers, everything queued for it goes out promptly.

A real HTTP sink fails for the outage, then answers 200; the clock is injected and moved one
monitor interval per step, with delivery drained at each step, as the delivery loop would.
"""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from channels import create_channel
from database import db
from models import Alert, Channel
from outbox import enqueue_alert

RECOVERY_SECONDS = 5
INTERVAL_SECONDS = 1
SETTINGS = {"BREAKER_FAILURE_THRESHOLD": 3, "BREAKER_RECOVERY_SECONDS": RECOVERY_SECONDS,
            "MONITOR_INTERVAL_SECONDS": INTERVAL_SECONDS}


def queue_alerts(channel_id: int, count: int, now: dt.datetime) -> None:
    channel = db.session.get(Channel, channel_id)
    for _ in range(count):
        enqueue_alert(channel, "application.down", None, None, None, now, 86400)
    db.session.commit()


def alerts_of(channel_id: int) -> list:
    alerts = db.session.execute(
        select(Alert.uuid, Alert.state, Alert.created_at, Alert.delivered_at,
               Alert.next_attempt_at).where(Alert.channel_id == channel_id)).all()
    db.session.rollback()
    return alerts


def step(deliverer, clock) -> None:
    """One monitor interval: everything due is sent, then time moves on."""
    deliverer.drain(30)
    clock.advance(seconds=INTERVAL_SECONDS)


RATE_LIMITED = {"status": 429, "headers": {"Retry-After": "600"}}


@pytest.mark.parametrize("failing_alerts,healthy_alerts,outage_seconds,failure", [
    (1, 0, 10, 503), (1, 0, 120, 503), (50, 50, 10, 503), (50, 50, 120, 503),
    # Every attempt told to come back in 10 minutes: the probe still goes once per recovery
    # period, and its success makes the alerts due despite their Retry-After.
    (1, 0, 120, RATE_LIMITED), (50, 50, 120, RATE_LIMITED)])
def test_every_alert_queued_during_an_outage_goes_out_within_recovery_plus_two_intervals(
        make_app, sink, other_sink, clock, failing_alerts, healthy_alerts, outage_seconds,
        failure):
    app = make_app(**SETTINGS)
    deliverer = app.extensions["hbmon"].deliverer
    started = clock.now()
    with app.app_context():
        failing = create_channel({"name": "flaky", "kind": "webhook", "url": sink.url}, started)
        healthy = create_channel({"name": "fine", "kind": "webhook", "url": other_sink.url},
                                 started)
        failing_id, healthy_id = failing.id, healthy.id
        queue_alerts(failing_id, failing_alerts, started)
        queue_alerts(healthy_id, healthy_alerts, started)
    sink.default = failure
    midway = started + dt.timedelta(seconds=outage_seconds // 2)
    while clock.now() < started + dt.timedelta(seconds=outage_seconds):
        if clock.now() == midway:
            with app.app_context():
                queue_alerts(healthy_id, 1, midway)
        step(deliverer, clock)
    attempts_during_outage = sink.answered[503] + sink.answered[429]
    sink.default = 200
    recovered_at = clock.now()
    deadline = recovered_at + dt.timedelta(seconds=60)
    while len(set(sink.alert_ids())) < failing_alerts and clock.now() < deadline:
        step(deliverer, clock)

    with app.app_context():
        delivered = alerts_of(failing_id)
        fine = alerts_of(healthy_id)
    assert {alert.state for alert in delivered} == {"delivered"}
    lag = max(alert.delivered_at for alert in delivered) - recovered_at
    assert lag <= dt.timedelta(seconds=RECOVERY_SECONDS + 2 * INTERVAL_SECONDS), lag
    # The probe's success made every waiting alert due at once: all went in the same pass.
    assert len({alert.delivered_at for alert in delivered}) == 1
    # While the breaker was open, only its probe went: once per recovery period.
    opening = 3 + 1  # the threshold, and the channel's second slot already in flight
    probes = outage_seconds // RECOVERY_SECONDS + 1
    assert attempts_during_outage <= min(failing_alerts, opening) + probes
    # The healthy channel was never held up: each of its alerts went the moment it was queued.
    assert len(fine) == healthy_alerts + 1
    assert all(alert.delivered_at == alert.created_at for alert in fine)
    assert sorted(other_sink.alert_ids()) == sorted(alert.uuid for alert in fine)


def test_backoff_never_grows_past_the_breaker_recovery_time(make_app, sink, clock):
    """However many attempts an alert has had, its next one is due within the recovery time."""
    app = make_app(**{**SETTINGS, "BREAKER_FAILURE_THRESHOLD": 1000})  # it stays closed
    deliverer = app.extensions["hbmon"].deliverer
    with app.app_context():
        channel = create_channel({"name": "flaky", "kind": "webhook", "url": sink.url},
                                 clock.now())
        channel_id = channel.id
        queue_alerts(channel_id, 1, clock.now())
    sink.default = 503
    waits = []
    for _ in range(12):  # the uncapped backoff would reach 2**12 s
        deliverer.drain(30)
        with app.app_context():
            [alert] = alerts_of(channel_id)
        waits.append((alert.next_attempt_at - clock.now()).total_seconds())
        clock.set(alert.next_attempt_at)
    assert len(sink.received) == 0 and sink.answered[503] == 12
    assert all(0 <= wait <= RECOVERY_SECONDS for wait in waits), waits


def test_a_successful_probe_makes_every_waiting_alert_of_its_channel_due_at_once(
        make_app, sink, clock):
    app = make_app(**SETTINGS)
    deliverer = app.extensions["hbmon"].deliverer
    with app.app_context():
        channel = create_channel({"name": "flaky", "kind": "webhook", "url": sink.url},
                                 clock.now())
        channel_id = channel.id
        queue_alerts(channel_id, 10, clock.now())
    sink.default = 503
    deliverer.drain(30)
    assert deliverer.breaker_for(channel_id).state == "open"
    with app.app_context():  # waits set elsewhere (another process, a long Retry-After)
        db.session.execute(update(Alert).values(
            next_attempt_at=clock.now() + dt.timedelta(hours=1)))
        db.session.commit()
    sink.default = 200
    clock.advance(seconds=RECOVERY_SECONDS)
    deliverer.drain(30)
    with app.app_context():
        waiting = alerts_of(channel_id)
    assert {alert.state for alert in waiting} == {"delivered"}
    assert {alert.delivered_at for alert in waiting} == {clock.now()}
