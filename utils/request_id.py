"""Request ids: reuse a sane incoming X-Request-ID, otherwise make one."""
from __future__ import annotations

import re
import uuid

from flask import g, has_request_context, request

_SANE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def request_id_for(incoming: str) -> str:
    """A sane incoming X-Request-ID, otherwise a new id."""
    return incoming if _SANE.match(incoming) else f"req_{uuid.uuid4().hex[:20]}"


def assign_request_id() -> None:
    g.request_id = request_id_for(request.headers.get("X-Request-ID", ""))


def current_request_id() -> str | None:
    if not has_request_context():
        return None
    if "request_id" not in g:
        assign_request_id()
    return g.request_id
