"""The headers a webhook channel may add to its deliveries.

A name must be an HTTP token; a value visible text (tab allowed) without CR, LF, NUL or any
other control character, and encodable as ISO-8859-1, as HTTP/1.1 sends it. Headers that frame
the request or concern the connection (`Content-Length`, `Transfer-Encoding`, `Host`, …) and
the ones delivery sets itself (`Content-Type`, `Idempotency-Key`, `X-Signature`,
`User-Agent`) are refused: a channel must not be able to truncate, smuggle or misdescribe its
own alerts.
"""
from __future__ import annotations

import re
from typing import Mapping

TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}")
VALUE = re.compile(r"[\t\x20-\x7e\xa0-\xff]*")
FRAMING_OR_HOP_BY_HOP = {"content-length", "transfer-encoding", "host", "connection",
                         "keep-alive", "te", "trailer", "upgrade", "expect", "content-encoding"}
SET_BY_DELIVERY = {"content-type", "idempotency-key", "x-signature", "user-agent"}


def header_problem(name: str, value: str) -> str | None:
    """Why this header may not be sent with an alert, or None if it may."""
    if not TOKEN.fullmatch(name):
        return "A header name is a token: letters, digits and !#$%&'*+.^_`|~- only."
    lowered = name.lower()
    if lowered in FRAMING_OR_HOP_BY_HOP or lowered.startswith("proxy-"):
        return f"{name} frames the request or the connection; it cannot be set."
    if lowered in SET_BY_DELIVERY:
        return f"{name} is set by the delivery itself."
    if not isinstance(value, str) or not VALUE.fullmatch(value):
        return "A header value is visible ISO-8859-1 text: no CR, LF, NUL or other control " \
               "character."
    return None


def deliverable_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The headers of a stored channel that may be sent (a row written before the checks
    existed may hold others)."""
    return {name: value for name, value in (headers or {}).items()
            if header_problem(name, value) is None}
