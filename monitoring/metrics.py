"""Prometheus metrics, names prefixed hbmon_ (§6.7).

Counters and histograms live in each process; under gunicorn, `PROMETHEUS_MULTIPROC_DIR` makes
prometheus_client keep them in files shared by the workers (see gunicorn.conf.py), and a scrape
sums them with `MultiProcessCollector`. Gauges describing stored state (applications per
status, alerts per state) are computed from the database at scrape time, so whichever worker
answers reports the same numbers. `hbmon_circuit_breaker_state{channel}` is read from the
breaker registry of the process answering (utils/circuit_breaker.py): the process that
delivers alerts, e.g. `flask monitor`, reports its breakers.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY
from sqlalchemy import func, select

from database import db
from models import ALERT_STATES, STATUSES, Alert, Application
from runtime import current_runtime

HTTP_REQUESTS = Counter("hbmon_http_requests", "HTTP requests served",
                        ["method", "route", "status"])
HEARTBEATS = Counter("hbmon_heartbeats", "Heartbeats received", ["kind"])
HEARTBEATS_SPOOLED = Counter("hbmon_heartbeats_spooled",
                             "Heartbeats written to the local spool while the database was down")
ALERT_DELIVERY_ATTEMPTS = Counter("hbmon_alert_delivery_attempts", "Alert delivery attempts",
                                  ["channel_kind", "outcome"])
ALERT_DELIVERY_SECONDS = Histogram("hbmon_alert_delivery_seconds",
                                   "Time taken by one alert delivery attempt")
ERRORS_LOGGED = Counter("hbmon_errors_logged", "Errors stored in the error log", ["error_type"])
ERROR_RECORDS_DROPPED = Counter("hbmon_error_records_dropped",
                                "Error records neither the database nor the spool could take "
                                "(written to the log instead)")
MONITOR_TICK_SECONDS = Histogram("hbmon_monitor_tick_seconds", "Duration of one monitor tick")


class ProcessMetricsCollector:
    """This process's own counters and histograms (when not in multiprocess mode)."""

    def collect(self):
        return REGISTRY.collect()


class StoredStateCollector:
    """hbmon_applications{status}, hbmon_alerts{state}, hbmon_circuit_breaker_state{channel}."""

    def collect(self):
        applications = GaugeMetricFamily("hbmon_applications", "Applications per status",
                                         labels=["status"])
        counts = dict(db.session.execute(
            select(Application.status, func.count()).group_by(Application.status)).all())
        for status in STATUSES:
            applications.add_metric([status], counts.get(status, 0))
        alerts = GaugeMetricFamily("hbmon_alerts", "Alerts per delivery state", labels=["state"])
        counts = dict(db.session.execute(
            select(Alert.state, func.count()).group_by(Alert.state)).all())
        for state in ALERT_STATES:
            alerts.add_metric([state], counts.get(state, 0))
        db.session.rollback()
        breakers = GaugeMetricFamily("hbmon_circuit_breaker_state",
                                     "Circuit breaker per channel: 0 closed, 1 open, 2 half-open",
                                     labels=["channel"])
        for breaker in current_runtime().breakers.snapshot():
            breakers.add_metric([breaker["name"].removeprefix("channel:")],
                                breaker["state_code"])
        return [applications, alerts, breakers]


def render_metrics(multiprocess_dir: str) -> bytes:
    """The text exposition of every metric, summed over all workers in multiprocess mode."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir:
        MultiProcessCollector(registry, path=multiprocess_dir)
    else:
        registry.register(ProcessMetricsCollector())
    registry.register(StoredStateCollector())
    return generate_latest(registry)
