"""The error hierarchy: each class carries its code, HTTP status and user-facing message."""
from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Base of every error a client may see; rendered as the §5 envelope."""

    code = "INTERNAL_ERROR"
    status = 500
    message = "An unexpected error occurred"
    retry_after_seconds: int | None = None

    def __init__(self, details: Any = None, *, message: str | None = None,
                 retry_after_seconds: int | None = None):
        super().__init__(message or self.message)
        self.details = details
        if message:
            self.message = message
        if retry_after_seconds is not None:
            self.retry_after_seconds = retry_after_seconds


class ValidationFailed(AppError):
    code, status, message = "VALIDATION_ERROR", 422, "The request data is invalid"


class MalformedRequest(AppError):
    code, status, message = "MALFORMED_REQUEST", 400, "The request could not be parsed"


class Unauthorized(AppError):
    code, status, message = "UNAUTHORIZED", 401, "A valid API key is required"


class Forbidden(AppError):
    code, status, message = "FORBIDDEN", 403, "This API key may not perform this action"


class NotFound(AppError):
    code, status, message = "NOT_FOUND", 404, "The requested resource was not found"


class HeartbeatNotFound(NotFound):
    code, message = "HEARTBEAT_NOT_FOUND", "Application with UUID not found"

    def __init__(self, uuid: str):
        super().__init__(f"No application found with UUID: {uuid}")


class SlugPingNotFound(NotFound):
    """A slug ping URL naming nothing: the same answer for a wrong key and an unknown slug."""

    code, message = "HEARTBEAT_NOT_FOUND", "No application for this ping key and slug"


class ApplicationNotFound(NotFound):
    code, message = "APPLICATION_NOT_FOUND", "Application not found"

    def __init__(self, uuid: str):
        super().__init__(f"No application found with UUID: {uuid}")


class ChannelNotFound(NotFound):
    code, message = "CHANNEL_NOT_FOUND", "Channel not found"

    def __init__(self, channel_id: Any):
        super().__init__(f"No channel found with id: {channel_id}")


class AlertNotFound(NotFound):
    code, message = "ALERT_NOT_FOUND", "Alert not found"

    def __init__(self, alert_id: Any):
        super().__init__(f"No alert found with id: {alert_id}")


class ErrorNotFound(NotFound):
    code, message = "ERROR_NOT_FOUND", "Error record not found"

    def __init__(self, error_id: Any):
        super().__init__(f"No error record found with id: {error_id}")


class MethodNotAllowed(AppError):
    code, status, message = "METHOD_NOT_ALLOWED", 405, "This method is not allowed here"


class Conflict(AppError):
    code, status, message = "CONFLICT", 409, "The request conflicts with the current state"


class PayloadTooLarge(AppError):
    code, status, message = "PAYLOAD_TOO_LARGE", 413, "The request body is too large"


class UnsupportedMediaType(AppError):
    code, status, message = ("UNSUPPORTED_MEDIA_TYPE", 415,
                             "The request body must be JSON (Content-Type: application/json)")


class RateLimited(AppError):
    code, status, message = "RATE_LIMITED", 429, "Too many requests"
    retry_after_seconds = 60


class InternalError(AppError):
    pass


class DatabaseUnavailable(AppError):
    code, status, message = "DATABASE_UNAVAILABLE", 503, "The database is temporarily unavailable"
    retry_after_seconds = 5


class ServiceUnavailable(AppError):
    code, status, message = "SERVICE_UNAVAILABLE", 503, "The service is temporarily unavailable"
    retry_after_seconds = 5
