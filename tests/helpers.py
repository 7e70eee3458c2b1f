"""Assertions on what a client sees."""
from __future__ import annotations

import datetime as dt
import time

import requests

ENVELOPE_KEYS = {"code", "message", "details", "timestamp", "request_id"}
LEAK_MARKERS = ("Traceback", 'File "', "/site-packages/", ".py\"", "SELECT ", "INSERT ",
                "UPDATE ", "psycopg2", "sqlalchemy", "sqlite3")


def assert_envelope(response: requests.Response, status: int, code: str) -> dict:
    """The response is the §5 envelope with this status and code; returns its error object."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == ENVELOPE_KEYS
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert dt.datetime.fromisoformat(error["timestamp"].replace("Z", "+00:00"))
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert_no_leak(response.text)
    return error


def assert_no_leak(text: str) -> None:
    for marker in LEAK_MARKERS:
        assert marker not in text, f"response leaks {marker!r}: {text[:300]}"


def wait_until(condition, timeout_seconds: float = 10.0, interval_seconds: float = 0.02,
               message: str = "") -> float:
    """Poll `condition` until it holds; returns the seconds that took. Fails after the timeout."""
    started = time.monotonic()
    while not condition():
        waited = time.monotonic() - started
        assert waited < timeout_seconds, message or f"not true within {timeout_seconds:g} s"
        time.sleep(interval_seconds)
    return time.monotonic() - started
