"""How the service and its dependencies are doing: /health and /health/dependencies (§6.7)."""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import tempfile
import time
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text

from config import Settings
from database import db
from monitoring.error_rate import current_error_rate
from runtime import current_runtime
from spool import MIN_ROOM_BYTES

log = logging.getLogger(__name__)

SMTP_PROBE_TIMEOUT_SECONDS = 1.0


def dependency(name: str, kind: str, healthy: bool, state: str,
               detail: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "healthy": healthy, "state": state, "detail": detail,
            **extra}


def check_database() -> dict[str, Any]:
    breaker = current_runtime().db_breaker
    if breaker.state == "open":  # known down: answer now rather than wait on it again
        return dependency("database", "database", False, "unavailable",
                          f"unreachable; next try in {max(breaker.open_remaining, 0):.1f} s")
    started = time.perf_counter()
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
    except Exception as error:  # any failure means unreachable, for a health report
        db.session.rollback()
        breaker.record_failure(error)
        return dependency("database", "database", False, "unavailable", type(error).__name__)
    elapsed_ms = (time.perf_counter() - started) * 1000
    return dependency("database", "database", True, "ok", f"answered in {elapsed_ms:.1f} ms",
                      latency_ms=round(elapsed_ms, 2))


def check_spool(spool_dir: str) -> dict[str, Any]:
    """The spool is healthy when it can take a heartbeat now: a file can be created in it and
    its cap and its disk both leave room for one (a file can be created on a full disk)."""
    runtime = current_runtime()
    depth = {"heartbeats_bytes": runtime.heartbeat_spool.depth_bytes(),
             "errors_bytes": runtime.error_spool.depth_bytes()}
    try:
        os.makedirs(spool_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=spool_dir):
            pass
    except OSError as error:
        return dependency("spool", "spool", False, "unwritable", error.strerror, depth=depth)
    room = runtime.heartbeat_spool.room_bytes()
    if room < MIN_ROOM_BYTES:
        return dependency("spool", "spool", False, "full",
                          f"{room} bytes of room left (cap SPOOL_MAX_BYTES or disk)",
                          depth=depth)
    waiting = sum(depth.values())
    return dependency("spool", "spool", True, "replay_pending" if waiting else "empty",
                      f"{waiting} bytes waiting for the database" if waiting else None,
                      depth=depth)


def check_smtp(smtp_url: str) -> dict[str, Any]:
    """A TCP connection to the SMTP server, when one is configured."""
    if not smtp_url:
        return dependency("smtp", "smtp", True, "not_configured", None)
    parts = urlsplit(smtp_url)
    host, port = parts.hostname or "localhost", parts.port or 25
    try:
        socket.create_connection((host, port), timeout=SMTP_PROBE_TIMEOUT_SECONDS).close()
    except OSError as error:
        return dependency("smtp", "smtp", False, "unreachable",
                          f"{host}:{port}: {error.strerror or type(error).__name__}")
    return dependency("smtp", "smtp", True, "ok", f"{host}:{port}")


def check_dependencies(settings: Settings, now: dt.datetime) -> dict[str, Any]:
    """One entry per dependency; never raises."""
    entries = [check_database(), check_spool(settings.SPOOL_DIR), check_smtp(settings.SMTP_URL)]
    for entry in current_runtime().breakers.snapshot():
        opened_at = entry["opened_at"]
        entries.append(dependency(
            entry["name"], "circuit_breaker", entry["state"] == "closed", entry["state"],
            f"{entry['failure_count']} consecutive failures", failure_count=entry["failure_count"],
            opened_at=opened_at.isoformat().replace("+00:00", "Z") if opened_at else None))
    for channel in current_runtime().channel_audit.refused():
        entries.append(dependency(
            f"channel:{channel.id}:target", "channel", False, "refused",
            f"{channel.kind} channel {channel.name!r} cannot deliver: {channel.reason}",
            channel_id=channel.id))
    status = "ok" if all(entry["healthy"] for entry in entries) else "degraded"
    return {"status": status, "checked_at": now, "dependencies": entries}


def service_health(settings: Settings, now: dt.datetime) -> dict[str, Any]:
    """ok; degraded while the error rate is high or a dependency is failing; down when
    neither the database nor the spool can take a heartbeat."""
    database = check_database()
    spool = check_spool(settings.SPOOL_DIR)
    error_rate = None
    if database["healthy"]:
        try:
            error_rate = current_error_rate(now, settings).as_dict()
            db.session.rollback()
        except Exception:
            db.session.rollback()
            log.warning("could not measure the error rate", exc_info=True)
    reasons = []
    if not database["healthy"]:
        reasons.append("database unavailable: heartbeats go to the local spool")
    if not spool["healthy"]:
        reasons.append(f"spool {spool['state']}: it cannot take a heartbeat")
    if error_rate and error_rate["high"]:
        reasons.append("error rate above threshold")
    if not database["healthy"] and not spool["healthy"]:
        status = "down"
    else:
        status = "degraded" if reasons else "ok"
    return {"status": status, "reasons": reasons, "checked_at": now,
            "database": database["state"], "spool": spool["state"], "error_rate": error_rate}
