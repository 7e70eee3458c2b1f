"""The application factory."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping

from flask import Flask, g, request

import models  # registers every table with SQLAlchemy
from acknowledgements import ack_bp
from background import serving_process, start_background
from badges import badges_bp
from channel_audit import ChannelAudit
from cli import register_cli
from config import INSTANCE_DIR, Settings
from console import register_console
from console.formatting import install_formatting
from dashboard import DashboardSessions, dashboard_bp
from database import db, engine_options, install_io_timeout, migrate
from delivery import Deliverer
from error_handlers import register_error_handlers
from exceptions import PayloadTooLarge
from healthchecks_api import register_healthchecks_api
from heartbeat_monitor import Monitor
from heartbeat_partitions import create_heartbeat_partitions
from incident_timers import check_due_incidents
from ingest.fast_path import PingFastPath
from ingest.replay import replay_spools
from ingest.slug_routes import SlugRoutes
from ingest.writer import HeartbeatWriter
from maintenance import refresh_occurrences
from monitoring import metrics
from monitoring.error_rate import RequestCounter, prune_request_counts
from monitoring.error_tracking import prune_resolved_errors
from monitoring.http_metrics import instrument_requests
from monitoring.logging_config import configure_logging
from monitoring.sentry import init_sentry
from openapi import docs_bp
from operations_api import errors_bp, monitoring_bp
from operator_alerts import check_error_rate
from outage import close_outage_gap, record_alive
from rate_limits import init_rate_limits
from retention import prune_old_heartbeats, prune_old_status_changes
from routes import api_bp, ping_bp
from runtime import EXTENSION_KEY, Runtime, current_runtime
from security import install_security
from spool import HEARTBEAT_RESERVE_BYTES, Spool
from transports import CHANNEL_KINDS, OUTCOMES, Transports, is_breaker_failure
from utils.circuit_breaker import Breaker, BreakerRegistry
from utils.clock import FileClock, SystemClock
from utils.request_id import assign_request_id, current_request_id

log = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parent


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. `config` overrides environment settings; `CLOCK` injects the time."""
    config = dict(config or {})
    clock = config.pop("CLOCK", None)
    settings = Settings.load(config)
    if clock is None:
        clock = FileClock(settings.CLOCK_FILE) if settings.CLOCK_FILE else SystemClock()
    configure_logging(settings.LOG_FORMAT, settings.LOG_LEVEL)
    init_sentry(settings)

    app = Flask(__name__, instance_path=str(INSTANCE_DIR))
    app.config.update(
        SECRET_KEY=settings.SECRET_KEY,
        SQLALCHEMY_DATABASE_URI=settings.sqlalchemy_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(settings),
        MAX_CONTENT_LENGTH=settings.MAX_BODY_BYTES,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    app.json.sort_keys = False
    app.session_interface = DashboardSessions()
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False

    if not settings.is_sqlite:
        install_io_timeout(settings.DB_IO_TIMEOUT_SECONDS)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_DIR / "migrations"),
                     render_as_batch=True)
    register_error_handlers(app)
    register_cli(app)
    for blueprint in (ping_bp, api_bp, errors_bp, monitoring_bp, docs_bp, dashboard_bp, ack_bp):
        app.register_blueprint(blueprint)
    register_healthchecks_api(app)
    register_console(app)
    install_formatting(app)
    app.register_blueprint(badges_bp)
    _install_request_hooks(app)
    instrument_requests(app)

    breakers = BreakerRegistry(settings.BREAKER_FAILURE_THRESHOLD,
                               settings.BREAKER_RECOVERY_SECONDS, clock, is_breaker_failure)
    # The database's own breaker runs on real time: it paces retries of real I/O.
    db_breaker = Breaker("database", 1, settings.DB_RETRY_SECONDS, time.monotonic)
    heartbeat_spool = Spool(settings.SPOOL_DIR, "heartbeats", settings.SPOOL_MAX_BYTES)
    transports = Transports(settings, clock)
    runtime = Runtime(
        settings=settings, clock=clock, breakers=breakers, db_breaker=db_breaker,
        heartbeat_spool=heartbeat_spool,
        # Error records may use an eighth of the cap and never the disk's last MiB: heartbeats
        # first.
        error_spool=Spool(settings.SPOOL_DIR, "errors", settings.SPOOL_MAX_BYTES // 8,
                          keep_free_bytes=HEARTBEAT_RESERVE_BYTES),
        writer=HeartbeatWriter(app, heartbeat_spool, db_breaker, settings.INGEST_TIMEOUT_SECONDS,
                               settings.INGEST_BATCH_WINDOW_SECONDS),
        slug_routes=SlugRoutes(app, db_breaker),
        request_counter=RequestCounter(app),
        rate_limits=init_rate_limits(app, settings),
        transports=transports,
        deliverer=Deliverer(app, settings, clock, breakers, transports),
        monitor=Monitor(app, clock, settings.MONITOR_INTERVAL_SECONDS,
                        before_judging=[replay_spools, close_outage_gap],
                        after_judging=[check_due_incidents, record_alive, check_error_rate],
                        housekeeping=[prune_request_counts, prune_resolved_errors,
                                      prune_old_heartbeats, prune_old_status_changes,
                                      refresh_occurrences,
                                      create_heartbeat_partitions]),
        channel_audit=ChannelAudit(app, settings))
    app.extensions[EXTENSION_KEY] = runtime
    metrics.initialize_series(models.HEARTBEAT_KINDS, CHANNEL_KINDS, OUTCOMES)
    app.wsgi_app = PingFastPath(app, runtime)  # behind ProxyFix: sees client addresses
    install_security(app, settings.TRUSTED_PROXY_COUNT)

    if settings.MONITOR_ENABLED and serving_process():
        start_background(app)
    return app


def _install_request_hooks(app: Flask) -> None:
    max_body = app.config["MAX_CONTENT_LENGTH"]

    @app.before_request
    def _start_request() -> None:
        assign_request_id()
        # Refuse an oversize body from its declared length, before reading any of it.
        if request.content_length is not None and request.content_length > max_body:
            raise PayloadTooLarge(f"Bodies may be at most {max_body} bytes.")

    @app.after_request
    def _finish_request(response):
        response.headers["X-Request-ID"] = current_request_id()
        if g.get("database_probe") and response.status_code != 503:
            current_runtime().db_breaker.record_success()
        return response

