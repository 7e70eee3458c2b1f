"""The application factory."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from flask import Flask, request

import models  # noqa: F401  (registers every table with SQLAlchemy)
from alert_manager import Deliverer
from background import serving_process, start_background
from cli import register_cli
from config import INSTANCE_DIR, Runtime, Settings
from dashboard import dashboard_bp
from database import db, engine_options, migrate
from error_handlers import register_error_handlers
from exceptions import PayloadTooLarge
from heartbeat_monitor import Monitor
from monitoring.http_metrics import instrument_requests
from monitoring.logging_config import configure_logging
from monitoring.sentry import init_sentry
from monitoring.views import errors_bp, monitoring_bp
from openapi import docs_bp
from routes import api_bp, ping_bp
from utils.circuit_breaker import BreakerRegistry
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
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    runtime = Runtime(settings=settings, clock=clock)
    app.extensions["hbmon"] = runtime

    db.init_app(app)
    migrate.init_app(app, db, directory=str(PROJECT_DIR / "migrations"),
                     render_as_batch=True)
    register_error_handlers(app)
    register_cli(app)
    app.register_blueprint(ping_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(errors_bp)
    app.register_blueprint(monitoring_bp)
    app.register_blueprint(docs_bp)
    app.register_blueprint(dashboard_bp)
    _install_request_hooks(app)
    instrument_requests(app)

    runtime.breakers = BreakerRegistry(settings.BREAKER_FAILURE_THRESHOLD,
                                       settings.BREAKER_RECOVERY_SECONDS, clock)
    runtime.deliverer = Deliverer(app, settings, clock, runtime.breakers)
    runtime.monitor = Monitor(app, clock, settings.MONITOR_INTERVAL_SECONDS)
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
        return response

