"""Request ids: reuse a sane incoming X-Request-ID, otherwise make one."""
from __future__ import annotations

import re
import uuid

from flask import g, has_request_context, request

_SANE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def assign_request_id() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _SANE.match(incoming) else f"req_{uuid.uuid4().hex[:20]}"


def current_request_id() -> str | None:
    if not has_request_context():
        return None
    if "request_id" not in g:
        assign_request_id()
    return g.request_id
