"""Opaque cursors for keyset pagination."""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from exceptions import ValidationFailed


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """Decode a cursor made by encode_cursor, or raise a 422 naming the cursor field."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        values = None
    if not isinstance(values, list) or len(values) != arity:
        raise ValidationFailed({"cursor": ["Invalid cursor."]})
    return values
