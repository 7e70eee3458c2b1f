"""Rate limits (§7), kept by Flask-Limiter in RATE_LIMIT_STORAGE_URL.

- pings: PING_RATE_LIMIT per application UUID *and* client address (someone else flooding a
  UUID cannot get its real job refused), and PING_CLIENT_RATE_LIMIT per client address over
  all UUIDs (a client spraying random UUIDs);
- the management API: API_RATE_LIMIT per API key (per client address before a key is known);
- dashboard sign-in: LOGIN_RATE_LIMIT per client address, against key guessing.

Only a refused request carries `Retry-After` (set by error_handlers.py); other answers carry
no rate-limit headers. `memory://` counts in each process; with several workers or instances use a shared store such
as `redis://127.0.0.1:6379/0`. When that store is unreachable requests are let through (the
limiter falls back to per-process counts): a monitor must not refuse heartbeats because its
rate-limit store is down. Over a limit: 429 `RATE_LIMITED` with `Retry-After`.
"""
from __future__ import annotations

import time

from flask import Flask, current_app, request
from flask_limiter import Limiter

from auth import key_prefix, presented_key
from config import Settings

EXTENSION = "hbmon_limiter"

def client_address() -> str:
    return request.remote_addr or "unknown"


def ping_key() -> str:
    """The UUID as written in the path plus the client's address."""
    uuid = (request.view_args or {}).get("uuid", "")
    return f"{uuid.lower()[:64]}@{client_address()}"


def api_key_identity() -> str:
    """The key's public prefix (never the key), or the client address without a key."""
    prefix = key_prefix(presented_key() or "")
    return f"key:{prefix[:16]}" if prefix else f"addr:{client_address()}"


def retry_after_seconds() -> int:
    """Seconds until the limit this request broke lets another request through."""
    current = current_app.extensions[EXTENSION].current_limit
    if current is None:
        return 1
    return max(1, int(current.reset_at - time.time()) + 1)


def init_rate_limits(app: Flask, settings: Settings) -> Limiter:
    """A limiter for this app with the limits above (fixed windows: cheap, Redis-friendly)."""
    limiter = Limiter(key_func=client_address, app=app,
                      storage_uri=settings.RATE_LIMIT_STORAGE_URL,
                      strategy="fixed-window", headers_enabled=False, swallow_errors=True,
                      in_memory_fallback_enabled=True, key_prefix="hbmon")
    app.extensions[EXTENSION] = limiter
    ping_bp, api_bp, dashboard_bp = (app.blueprints[name] for name in ("ping", "api", "dashboard"))

    limiter.limit(settings.PING_RATE_LIMIT, key_func=ping_key,
                  scope="ping-uuid")(ping_bp)
    limiter.limit(settings.PING_CLIENT_RATE_LIMIT, key_func=client_address,
                  scope="ping-client")(ping_bp)
    limiter.limit(settings.API_RATE_LIMIT, key_func=api_key_identity, scope="api",
                  exempt_when=lambda: request.endpoint == "api.create_heartbeat")(api_bp)
    limiter.limit(settings.PING_RATE_LIMIT, key_func=ping_key, scope="ping-uuid",
                  exempt_when=lambda: request.endpoint != "api.create_heartbeat")(api_bp)
    limiter.limit(settings.LOGIN_RATE_LIMIT, key_func=client_address, scope="login",
                  methods=["POST"],
                  exempt_when=lambda: request.endpoint != "dashboard.login_submit")(dashboard_bp)
    return limiter
