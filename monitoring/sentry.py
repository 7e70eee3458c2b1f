"""Sentry error reporting, on when SENTRY_DSN is set; events are scrubbed of secrets."""
from __future__ import annotations

import logging
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.flask import FlaskIntegration
from sentry_sdk.integrations.logging import LoggingIntegration

from config import Settings
from monitoring.scrubbing import scrub_data
from utils.request_id import current_request_id

log = logging.getLogger(__name__)


def init_sentry(settings: Settings) -> bool:
    """Start the Sentry client when a DSN is configured; returns whether it is on."""
    if not settings.SENTRY_DSN:
        return False
    sentry_sdk.init(
        dsn=settings.SENTRY_DSN,
        integrations=[FlaskIntegration(),
                      # Log lines become breadcrumbs only; exceptions are reported explicitly.
                      LoggingIntegration(level=logging.INFO, event_level=None)],
        include_local_variables=False,
        traces_sample_rate=0.0,
        before_send=before_send,
        before_breadcrumb=before_breadcrumb,
    )
    return True


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Tag the event with the request id and remove every secret from it."""
    request_id = current_request_id()
    if request_id:
        event.setdefault("tags", {})["request_id"] = request_id
    return scrub_data(event)


def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    return scrub_data(crumb)


def report_exception(error: BaseException) -> None:
    """Send an unexpected exception to Sentry; a no-op when Sentry is off.

    Our error handler answers every exception, so Flask never signals it as unhandled and the
    Flask integration would not see it on its own.
    """
    sentry_sdk.capture_exception(error)
