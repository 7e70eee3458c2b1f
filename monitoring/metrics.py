"""Prometheus metrics, names prefixed hbmon_ (§6.7)."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

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
MONITOR_TICK_SECONDS = Histogram("hbmon_monitor_tick_seconds", "Duration of one monitor tick")
