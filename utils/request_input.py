"""Reading what a client sent: UUIDs in paths, bodies, JSON objects and query arguments.

Each refuses bad input with the error of §5 before anything else is done with it.
"""
from __future__ import annotations

import json
import uuid as uuid_lib
from typing import Any

from flask import current_app, request
from marshmallow import Schema

from exceptions import MalformedRequest, PayloadTooLarge, UnsupportedMediaType

MAX_JSON_DEPTH = 16


def canonical_uuid(value: str) -> str | None:
    """The canonical lower-case form of a UUID, or None if `value` is not one."""
    try:
        return str(uuid_lib.UUID(value))
    except ValueError:
        return None


def parse_uuid(value: str) -> str:
    """Canonical lower-case UUID, or 400 before any query is made."""
    parsed = canonical_uuid(value)
    if parsed is None:
        raise MalformedRequest(f"Not a valid UUID: {value[:64]!r}")
    return parsed


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def json_depth_exceeds(data: bytes, limit: int) -> bool:
    """True when brackets outside strings nest deeper than `limit` (checked before parsing)."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def read_body() -> bytes:
    """The whole body, refusing more than MAX_BODY_BYTES even when no length was declared."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    # A declared length was checked before the view; with neither a length nor a server-framed
    # (chunked) body, there is no body to read.
    if request.content_length is not None or not request.environ.get("wsgi.input_terminated"):
        data = request.get_data(cache=True)
        if request.content_length is not None and len(data) < request.content_length:
            # The client went away mid-body; the server hands over what arrived. Half a
            # heartbeat is not one: store nothing.
            raise MalformedRequest("The body ended before its declared Content-Length.")
        return data
    stream, parts, size = request.input_stream, [], 0
    while size <= limit:
        chunk = stream.read(min(65536, limit + 1 - size))
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        size += len(chunk)
    raise PayloadTooLarge(f"Bodies may be at most {limit} bytes.")


def json_body(*, allow_empty: bool = False, any_media_type: bool = False) -> dict[str, Any]:
    """The request body as a JSON object (strict: no NaN or Infinity); with `any_media_type`,
    whatever its Content-Type (as `curl --data` sends it)."""
    data = read_body()
    if not data.strip():
        if allow_empty:
            return {}
        raise MalformedRequest("A JSON object body is required.")
    if not any_media_type and not request.is_json:
        raise UnsupportedMediaType(f"Got Content-Type: {request.mimetype or 'none'}")
    if json_depth_exceeds(data, MAX_JSON_DEPTH):
        raise MalformedRequest(f"The JSON nests deeper than {MAX_JSON_DEPTH} levels.")
    try:
        value = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise MalformedRequest("The body is not valid JSON.")
    if not isinstance(value, dict):
        raise MalformedRequest("The JSON body must be an object.")
    return value


def query_args(schema: Schema) -> dict[str, Any]:
    return schema.load(request.args.to_dict())
