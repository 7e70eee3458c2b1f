"""§6.7: the error rate over a sliding window, its operator alert and /health."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select

from database import db
from models import Alert, RequestCount
from monitoring.error_rate import current_error_rate, measure_error_rate
from operator_alerts import check_error_rate
from tests.conftest import Client
from tests.factories import add_request_counts, make_channel


def alerts_of(app) -> list[Alert]:
    with app.app_context():
        rows = list(db.session.execute(select(Alert).order_by(Alert.id)).scalars())
        db.session.expunge_all()
        return rows


def check(app, now: dt.datetime) -> list[Alert]:
    with app.app_context():
        written = check_error_rate(now)
        db.session.remove()
        return written


@pytest.fixture
def failing_server(app, serve):
    """The app with one extra route that raises, served over HTTP."""

    def explode():
        raise RuntimeError("bug")

    app.add_url_rule("/boom", "boom", explode)
    return serve(app)


def test_served_requests_and_5xx_are_counted_in_the_window(app, failing_server, clock):
    client = Client(failing_server.url)
    for _ in range(3):
        assert client.get("/boom").status_code == 500
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/health").status_code == 200  # probes are not traffic
    with app.app_context():
        measured = current_error_rate(clock.now())
    assert (measured.requests, measured.errors) == (4, 3)
    assert measured.rate == 0.75


def test_counts_leave_the_window_as_time_passes(app, clock):
    add_request_counts(app, clock.now(), requests=40, errors=10)
    with app.app_context():
        assert measure_error_rate(clock.advance(seconds=290)).requests == 40
        assert measure_error_rate(clock.advance(seconds=20)).requests == 0


def test_high_rate_queues_one_alert_per_operator_channel(app, clock):
    ops = make_channel(app, "ops", is_operator=True)
    pager = make_channel(app, "pager", is_operator=True)
    make_channel(app, "customer", is_operator=False)
    add_request_counts(app, clock.now(), requests=40, errors=4)
    add_request_counts(app, clock.now(), requests=10, errors=2, source="third-worker")
    written = check(app, clock.now())
    assert len(written) == 2
    alerts = alerts_of(app)
    assert sorted(alert.channel_id for alert in alerts) == [ops, pager]
    for alert in alerts:
        assert alert.event == "service.error_rate_high"
        assert alert.state == "pending"
        assert alert.next_attempt_at == clock.now()
        assert alert.payload == {
            "event": "service.error_rate_high", "alert_id": alert.uuid,
            "occurred_at": "2030-01-01T00:00:00Z", "error_rate": 0.12,
            "window_seconds": 300, "requests": 50, "errors": 6}


def test_rate_at_or_below_threshold_or_with_few_requests_raises_nothing(app, clock):
    make_channel(app, "ops", is_operator=True)
    add_request_counts(app, clock.now(), requests=100, errors=5)  # exactly 5 %: not above
    assert check(app, clock.now()) == []
    add_request_counts(app, clock.advance(seconds=400), requests=19, errors=19)  # too few
    assert check(app, clock.now()) == []
    assert alerts_of(app) == []


def test_alert_is_sent_at_most_once_per_cooldown(app, clock):
    make_channel(app, "ops", is_operator=True)
    start = clock.now()
    for minute in range(0, 61, 5):  # the rate stays high for an hour
        add_request_counts(app, start + dt.timedelta(minutes=minute), requests=50, errors=25)
    sent = [minute for minute in range(0, 61, 1)
            if check(app, start + dt.timedelta(minutes=minute))]
    assert sent == [0, 30, 60]
    assert len(alerts_of(app)) == 3


def test_concurrent_checks_from_two_processes_alert_once(make_app, app, clock):
    make_channel(app, "ops", is_operator=True)
    add_request_counts(app, clock.now(), requests=50, errors=50)
    other = make_app()  # its own engine and connections, as another process
    barrier = threading.Barrier(2)
    results: list[int] = []

    def run(instance):
        barrier.wait()
        results.append(len(check(instance, clock.now())))

    threads = [threading.Thread(target=run, args=(instance,)) for instance in (app, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [0, 1]
    assert len(alerts_of(app)) == 1


def _bucket_count(app) -> int:
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(RequestCount)).scalar()


def test_old_buckets_are_pruned_by_the_monitor_at_most_once_a_minute(app, runtime, clock):
    start = clock.now()
    for _ in runtime.monitor.housekeeping:  # one housekeeping task a tick; each is next due
        runtime.monitor.tick()              # a minute later
    add_request_counts(app, start - dt.timedelta(seconds=700), requests=5, errors=0)  # stale
    add_request_counts(app, start, requests=5, errors=0)
    clock.advance(seconds=59)
    runtime.monitor.tick()
    assert _bucket_count(app) == 2
    clock.advance(seconds=1)
    runtime.monitor.tick()
    assert _bucket_count(app) == 1  # the stale bucket went, the current one stays


def test_health_is_degraded_while_the_rate_is_high(app, anonymous, clock):
    healthy = anonymous.get("/health").json()
    assert healthy["status"] == "ok" and healthy["database"] == "ok"
    assert healthy["reasons"] == []
    add_request_counts(app, clock.now(), requests=30, errors=10)
    response = anonymous.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["reasons"] == ["error rate above threshold"]
    assert body["error_rate"]["high"] is True and body["error_rate"]["errors"] == 10
    clock.advance(seconds=301)
    assert anonymous.get("/health").json()["status"] == "ok"


def test_health_dependencies_lists_database_spool_and_smtp(anonymous):
    body = anonymous.get("/health/dependencies").json()
    by_name = {entry["name"]: entry for entry in body["dependencies"]}
    assert by_name["database"]["healthy"] is True
    assert 0 <= by_name["database"]["latency_ms"] < 5000
    assert by_name["spool"]["healthy"] is True and by_name["spool"]["state"] == "empty"
    assert by_name["spool"]["depth"] == {"heartbeats_bytes": 0, "errors_bytes": 0}
    assert by_name["smtp"]["state"] == "not_configured"
    assert body["status"] == "ok"
