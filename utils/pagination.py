"""Keyset pagination with opaque cursors: one helper serves every list of the API.

A page is read in the order of its sort key (ending with a unique column, so the order is total)
and the next page starts after the last row's key. The cursor carries that key, tagged with the
list it belongs to and signed with SECRET_KEY: a cursor this server did not make for this list
(edited, truncated, taken from another list) answers 400 MALFORMED_REQUEST, never a 500.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from typing import Any, Sequence

from flask import current_app
from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from database import db
from exceptions import MalformedRequest

MAX_KEY_INTEGER = 2**63 - 1
MAX_CURSOR_CHARS = 512
SIGNATURE_BYTES = 12


def paginate(query: Select, sort_key: Sequence[InstrumentedAttribute], limit: int,
             cursor: str | None, *, scope: str,
             descending: bool = True) -> tuple[list[Any], str | None]:
    """One page of `query`'s rows in `sort_key` order, and the cursor of the next page."""
    order = [column.desc() if descending else column.asc() for column in sort_key]
    query = query.order_by(*order).limit(limit + 1)
    if cursor:
        after = decode_cursor(cursor, scope, sort_key)
        row_key, cursor_key = tuple_(*sort_key), tuple_(*after)
        query = query.where(row_key < cursor_key if descending else row_key > cursor_key)
    rows = list(db.session.execute(query).scalars())
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor(scope, [getattr(last, column.key) for column in sort_key])
    return rows[:limit], next_cursor


def _signature(scope: str, body: str) -> str:
    key = current_app.secret_key
    key = key.encode() if isinstance(key, str) else key
    digest = hmac.new(key, f"{scope}\n{body}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:SIGNATURE_BYTES]).decode().rstrip("=")


def encode_cursor(scope: str, values: list[Any]) -> str:
    """An opaque cursor for the list `scope`, holding the sort key `values`."""
    plain = [value.isoformat() if isinstance(value, dt.datetime) else value for value in values]
    body = base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode())
    body_text = body.decode().rstrip("=")
    return f"{body_text}.{_signature(scope, body_text)}"


def _invalid() -> MalformedRequest:
    return MalformedRequest({"cursor": ["Not a cursor this list gave out; start without one."]},
                            message="The cursor is not valid")


def decode_cursor(cursor: str, scope: str,
                  sort_key: Sequence[InstrumentedAttribute]) -> list[Any]:
    """The sort key a cursor of `scope` holds, typed like the columns; 400 for any other."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise _invalid()
    body, _, signature = cursor.partition(".")
    if not hmac.compare_digest(signature.encode(), _signature(scope, body).encode()):
        raise _invalid()
    try:
        values = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _invalid()
    if not isinstance(values, list) or len(values) != len(sort_key):
        raise _invalid()
    return [_typed(value, column) for value, column in zip(values, sort_key)]


def _typed(value: Any, column: InstrumentedAttribute) -> Any:
    python_type = column.type.python_type
    if python_type is int and type(value) is int and 0 <= value <= MAX_KEY_INTEGER:
        return value
    if python_type is dt.datetime and isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise _invalid()
        if moment.tzinfo is not None:
            return moment
    if python_type is str and isinstance(value, str):
        return value
    raise _invalid()
