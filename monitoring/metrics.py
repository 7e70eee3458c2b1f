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
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY
from sqlalchemy import func, select

from database import db
from models import ALERT_STATES, STATUSES, Alert, Application, Channel
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
ALERT_DELIVERY_LAG_SECONDS = Histogram(
    "hbmon_alert_delivery_lag_seconds", "From an alert's creation to its delivery",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400))

# Every family of SPEC §6.7 (and the lag), by its name in the exposition: present on the first
# scrape even before anything has been counted.
FAMILIES = {
    "hbmon_http_requests_total": ("counter", "HTTP requests served"),
    "hbmon_heartbeats_total": ("counter", "Heartbeats received"),
    "hbmon_heartbeats_spooled_total": ("counter", "Heartbeats written to the local spool while "
                                                  "the database was down"),
    "hbmon_applications": ("gauge", "Applications per status"),
    "hbmon_alerts": ("gauge", "Alerts per delivery state"),
    "hbmon_alert_delivery_attempts_total": ("counter", "Alert delivery attempts"),
    "hbmon_alert_delivery_seconds": ("histogram", "Time taken by one alert delivery attempt"),
    "hbmon_alert_delivery_lag_seconds": ("histogram", "From an alert's creation to its delivery"),
    "hbmon_circuit_breaker_state": ("gauge", "Circuit breaker per channel: 0 closed, 1 open, "
                                             "2 half-open"),
    "hbmon_errors_logged_total": ("counter", "Errors stored in the error log"),
    "hbmon_monitor_tick_seconds": ("histogram", "Duration of one monitor tick"),
}


def initialize_series(heartbeat_kinds: tuple[str, ...], channel_kinds: tuple[str, ...],
                      outcomes: tuple[str, ...]) -> None:
    """Zero-valued series for the label values known in advance (called by create_app): in
    multiprocess mode a series exists for a scrape only once some process has created it."""
    for kind in heartbeat_kinds:
        HEARTBEATS.labels(kind=kind)
    for channel_kind in channel_kinds:
        for outcome in outcomes:
            ALERT_DELIVERY_ATTEMPTS.labels(channel_kind=channel_kind, outcome=outcome)
    HTTP_REQUESTS.labels(method="GET", route="/metrics", status="200")


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
        channel_ids = db.session.execute(select(Channel.id).order_by(Channel.id)).scalars().all()
        db.session.rollback()
        breakers = GaugeMetricFamily("hbmon_circuit_breaker_state",
                                     "Circuit breaker per channel: 0 closed, 1 open, 2 half-open",
                                     labels=["channel"])
        states = {breaker["name"].removeprefix("channel:"): breaker["state_code"]
                  for breaker in current_runtime().breakers.snapshot()}
        # Every channel has a series: closed (0) until this process has a breaker for it.
        for channel in sorted({str(channel_id) for channel_id in channel_ids} | set(states),
                              key=lambda name: (len(name), name)):
            breakers.add_metric([channel], states.get(channel, 0))
        return [applications, alerts, breakers]


class EmptyFamilies:
    """The families no process has written a sample of yet, without samples (HELP and TYPE)."""

    def __init__(self, present: set[str]):
        self.present = present

    def collect(self):
        for name, (kind, documentation) in FAMILIES.items():
            if name not in self.present:
                yield Metric(name.removesuffix("_total") if kind == "counter" else name,
                             documentation, kind)


def render_metrics(multiprocess_dir: str) -> bytes:
    """The text exposition of every metric, summed over all workers in multiprocess mode."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir:
        MultiProcessCollector(registry, path=multiprocess_dir)
    else:
        registry.register(ProcessMetricsCollector())
    registry.register(StoredStateCollector())
    families = list(registry.collect())
    present = {family.name + ("_total" if family.type == "counter" else "")
               for family in families}
    return generate_latest(FixedRegistry(families + list(EmptyFamilies(present).collect())))


class FixedRegistry:
    """Families already collected, for generate_latest."""

    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self):
        return iter(self.families)
