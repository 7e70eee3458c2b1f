"""One place that turns every error into the §5 JSON envelope."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, jsonify
from marshmallow import ValidationError
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

import exceptions as errors
from database import is_connection_error
from monitoring.error_tracking import record_error
from monitoring.sentry import report_exception
from runtime import current_runtime
from utils.clock import utc_iso
from utils.request_id import current_request_id

log = logging.getLogger(__name__)

_HTTP_ERRORS: dict[int, type[errors.AppError]] = {
    400: errors.MalformedRequest,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
    422: errors.ValidationFailed,
    429: errors.RateLimited,
    503: errors.ServiceUnavailable,
}


def error_response(error: errors.AppError) -> Response:
    """Render an AppError as the envelope, with its status and headers."""
    body = {"error": {
        "code": error.code,
        "message": error.message,
        "details": error.details,
        "timestamp": utc_iso(current_runtime().clock.now()),
        "request_id": current_request_id(),
    }}
    response = jsonify(body)
    response.status_code = error.status
    if error.retry_after_seconds is not None and error.status in (429, 503):
        response.headers["Retry-After"] = str(int(error.retry_after_seconds))
    return response


def handle_app_error(error: errors.AppError) -> Response:
    if error.status >= 500:
        record_error(error, error.status)
    return error_response(error)


def handle_validation_error(error: ValidationError) -> Response:
    return error_response(errors.ValidationFailed(field_messages(error.normalized_messages())))


def field_messages(messages: Any, path: str = "_schema") -> dict[str, list[str]]:
    """marshmallow's nested messages as one map of field paths to messages (§5 details).

    {"tags": {1: ["Bad."]}} becomes {"tags.1": ["Bad."]}.
    """
    flat: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for name, nested in messages.items():
            child = str(name) if path == "_schema" else f"{path}.{name}"
            for field, texts in field_messages(nested, child).items():
                flat.setdefault(field, []).extend(texts)
    elif isinstance(messages, (list, tuple)):
        for message in messages:
            for field, texts in field_messages(message, path).items():
                flat.setdefault(field, []).extend(texts)
    else:
        flat[path] = [str(messages)]
    return flat


def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    error_class = _HTTP_ERRORS.get(status)
    if error_class is None:
        app_error = errors.AppError(error.description) if status >= 500 else \
            errors.MalformedRequest(error.description)
        app_error.status = status
    else:
        app_error = error_class(_http_details(error, status))
    response = handle_app_error(app_error)
    for name, value in error.get_headers():
        if name.lower() == "allow":
            response.headers["Allow"] = value
    return response


def _http_details(error: HTTPException, status: int) -> str | None:
    if status == 404:
        return "No such endpoint. See /openapi.json for the API."
    if status == 405:
        return "See the Allow header for the methods this endpoint accepts."
    if status == 413:
        return f"Bodies may be at most {current_app.config['MAX_CONTENT_LENGTH']} bytes."
    return None


def handle_unexpected(error: Exception) -> Response:
    if isinstance(error, sa_exc.IntegrityError):  # a race lost to a concurrent insert
        return error_response(errors.Conflict("The resource was changed concurrently or exists."))
    if is_connection_error(error):
        log.warning("database unavailable: %s", type(error).__name__)
        current_runtime().db_breaker.record_failure(error)
        unavailable = errors.DatabaseUnavailable("The database could not be reached; retry shortly.")
        record_error(error, 503)
        return error_response(unavailable)
    log.exception("unhandled exception")
    record_error(error, 500)
    report_exception(error)
    return error_response(errors.InternalError("The error has been logged."))


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(errors.AppError, handle_app_error)
    app.register_error_handler(ValidationError, handle_validation_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
