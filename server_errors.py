"""Requests gunicorn refuses before they reach the app, answered with the §5 envelope.

A malformed request line, an over-long URI, headers too large, both Content-Length and
Transfer-Encoding: gunicorn's parser refuses these itself and writes its own HTML page.
gunicorn.conf.py has each worker write this JSON envelope instead (same status, code by
status, a fresh request id, the security headers every answer carries).
"""
from __future__ import annotations

import json

from gunicorn import util as gunicorn_util

from security import API_HEADERS
from utils.clock import SystemClock, utc_iso
from utils.request_id import request_id_for

MESSAGES = {
    400: "The request could not be parsed",
    403: "This request is not allowed",
    414: "The request URI is too long",
    417: "The expectation in the request cannot be met",
    431: "The request headers are too large",
    501: "The request's transfer coding is not supported",
}
CODES = {403: "FORBIDDEN", 500: "INTERNAL_ERROR"}


def envelope_error_response(status: int, reason: str, details: str) -> bytes:
    """The whole HTTP/1.1 answer, connection closed, for a request that never reached the app."""
    request_id = request_id_for("")
    body = json.dumps({"error": {
        "code": CODES.get(status, "MALFORMED_REQUEST"),
        "message": MESSAGES.get(status, "An unexpected error occurred"),
        "details": details[:200] or None,
        "timestamp": utc_iso(SystemClock().now()),
        "request_id": request_id,
    }}, separators=(",", ":")).encode()
    headers = [("Connection", "close"), ("Content-Type", "application/json"),
               ("Content-Length", str(len(body))), ("X-Request-ID", request_id), *API_HEADERS]
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
    return head.encode("latin-1") + body


def write_envelope_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error's replacement (same signature)."""
    gunicorn_util.write_nonblock(sock, envelope_error_response(status_int, reason, mesg))


def install() -> None:
    """Make this process's gunicorn worker answer its own refusals with the envelope."""
    gunicorn_util.write_error = write_envelope_error
