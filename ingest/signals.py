"""What a heartbeat is as received, and how a ping URL says it (SPEC §3).

Shared by the ping view (routes.py), the JSON heartbeat view and the fast path
(ingest/fast_path.py), so a ping means the same whichever way it came.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from exceptions import NotFound, ValidationFailed
from models import new_uuid
from utils.request_input import canonical_uuid

PING_RULE, PING_SIGNAL_RULE = "/ping/<uuid>", "/ping/<uuid>/<signal>"
# /ping/<ping-key>/<slug> has the shape of PING_SIGNAL_RULE: a first part that is no UUID
# makes it a slug ping.
SLUG_PING_RULE = "/ping/<ping_key>/<slug>"
SLUG_PING_SIGNAL_RULE = "/ping/<ping_key>/<slug>/<signal>"
PING_METHODS = ["GET", "POST", "HEAD"]
PING_ANSWER = "OK"
PING_CREATED_ANSWER = "Created"
PING_SIGNALS = {"start": "start", "fail": "fail", "log": "log"}
MAX_PING_MESSAGE_BYTES = 100 * 1024
# Every ping answer says how much of a body is kept, as Healthchecks' do.
PING_BODY_LIMIT_HEADER = ("Ping-Body-Limit", str(MAX_PING_MESSAGE_BYTES))
MAX_USER_AGENT_CHARS = 300


@dataclasses.dataclass
class Signal:
    """One heartbeat as received, before it is stored; its fields are the stored columns'."""

    kind: str
    received_at: dt.datetime
    exit_code: int | None = None
    message: str = ""
    duration_ms: int | None = None
    metadata_json: dict[str, Any] | None = None
    rid: str | None = None
    source: str = "ping"
    method: str | None = None  # of a ping's HTTP request
    remote_addr: str | None = None
    user_agent: str | None = None
    uuid: str = dataclasses.field(default_factory=new_uuid)


def heartbeat_view(application_uuid: str, heartbeat: Any, duration_ms: int | None = None,
                   kind: str | None = None) -> dict[str, Any]:
    """A heartbeat (a Signal or a stored row) as the API shows it and the spool keeps it.

    `duration_ms` gives a run's duration measured while it was stored, when there is one;
    `kind` the kind it was stored as, when that is not the kind received ("ign").
    """
    return {"uuid": heartbeat.uuid, "application_uuid": application_uuid,
            "kind": kind or heartbeat.kind, "exit_code": heartbeat.exit_code,
            "message": heartbeat.message,
            "duration_ms": duration_ms if duration_ms is not None else heartbeat.duration_ms,
            "metadata": heartbeat.metadata_json, "rid": heartbeat.rid,
            "source": heartbeat.source, "method": heartbeat.method,
            "received_at": heartbeat.received_at,
            "remote_addr": heartbeat.remote_addr, "user_agent": heartbeat.user_agent}


def is_slug_ping(first: str, second: str | None) -> bool:
    """True when `/ping/<first>/<second>` is a slug ping: its first part is no UUID."""
    return second is not None and canonical_uuid(first) is None


def ping_rate_limit_key(view_args: dict[str, str]) -> str:
    """What a ping's per-application rate limit counts by: its UUID as written or, for a slug
    ping, its slug (never its ping key: a secret)."""
    if "slug" in view_args:
        return f"slug:{view_args['slug']}"
    first, second = view_args.get("uuid", ""), view_args.get("signal")
    return f"slug:{second}" if is_slug_ping(first, second) else first


def kind_for_exit_code(exit_code: int) -> str:
    return "ok" if exit_code == 0 else "fail"


def _is_exit_status(signal: str) -> bool:
    return signal.isascii() and signal.isdigit() and len(signal) <= 3


def read_ping_signal(signal: str | None) -> tuple[str, int | None] | None:
    """(kind, exit code) for the last part of a ping URL (none, start/fail/log or 0-255), or
    None when it names no signal."""
    if signal is None:
        return "ok", None
    if signal in PING_SIGNALS:
        return PING_SIGNALS[signal], None
    if _is_exit_status(signal) and int(signal) <= 255:
        return kind_for_exit_code(int(signal)), int(signal)
    return None


def ping_kind(signal: str | None) -> tuple[str, int | None]:
    """read_ping_signal, refusing what names no signal: 422 for an exit status over 255."""
    parsed = read_ping_signal(signal)
    if parsed is not None:
        return parsed
    if _is_exit_status(signal):
        raise ValidationFailed({"exit_code": ["Must be between 0 and 255."]})
    raise NotFound(f"Unknown ping signal: {signal[:32]!r}")


def storable_text(text: str) -> str:
    """Text as PostgreSQL can store it: a NUL character becomes U+FFFD."""
    return text.replace("\x00", "\ufffd")


def ping_message(body: bytes) -> str:
    """A ping's body as its heartbeat's message: the first 100 KB, as text."""
    return storable_text(body[:MAX_PING_MESSAGE_BYTES].decode("utf-8", errors="replace"))


def received_signal(kind: str, *, received_at: dt.datetime, remote_addr: str | None,
                    user_agent: str, **fields: Any) -> Signal:
    """A heartbeat as a client sent it, its user agent as it can be stored."""
    return Signal(kind=kind, received_at=received_at, remote_addr=remote_addr,
                  user_agent=storable_text(user_agent)[:MAX_USER_AGENT_CHARS] or None, **fields)
