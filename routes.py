"""HTTP routes: thin views that parse, call one function and serialize."""
from __future__ import annotations

import json
import uuid as uuid_lib
from typing import Any

from flask import Blueprint, Response, current_app, request

import alert_manager
import applications
import channels
from auth import require_api_key
from config import runtime
from database import refuse_while_database_down
from exceptions import (MalformedRequest, NotFound, PayloadTooLarge,
                        UnsupportedMediaType, ValidationFailed)
from heartbeat_monitor import MAX_PING_MESSAGE_BYTES, Signal, kind_for_exit_code
from schemas import (AlertDetailSchema, AlertListQuerySchema, AlertOutSchema, AlertPageSchema,
                     ApplicationInSchema, ApplicationListQuerySchema, ApplicationOutSchema,
                     ApplicationPageSchema, ChannelInSchema, ChannelListSchema,
                     ChannelOutSchema, ChannelTestResultSchema, HeartbeatInSchema,
                     HeartbeatOutSchema, HeartbeatPageSchema, IncidentPageSchema,
                     PageQuerySchema)

ping_bp = Blueprint("ping", __name__)
api_bp = Blueprint("api", __name__, url_prefix="/api/v1")

PING_SIGNALS = {"start": "start", "fail": "fail", "log": "log"}
PING_RULE, PING_SIGNAL_RULE = "/ping/<uuid>", "/ping/<uuid>/<signal>"
PING_METHODS = ["GET", "POST", "HEAD"]
PING_ANSWER = "OK"
MAX_JSON_DEPTH = 16
PUBLIC_API_ENDPOINTS = {"api.create_heartbeat"}


def parse_uuid(value: str) -> str:
    """Canonical lower-case UUID, or 400 before any query is made."""
    try:
        return str(uuid_lib.UUID(value))
    except ValueError:
        raise MalformedRequest(f"Not a valid UUID: {value[:64]!r}")


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
        return request.get_data(cache=True)
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


def query_args(schema) -> dict[str, Any]:
    return schema.load(request.args.to_dict())


def storable_text(text: str) -> str:
    """Text as PostgreSQL can store it: a NUL character becomes U+FFFD."""
    return text.replace("\x00", "\ufffd")


def received_signal(kind: str, *, received_at, remote_addr: str | None, user_agent: str,
                    **fields: Any) -> Signal:
    """A heartbeat as a client sent it, its user agent as it can be stored."""
    return Signal(kind=kind, received_at=received_at, remote_addr=remote_addr,
                  user_agent=storable_text(user_agent)[:300] or None, **fields)


def _client_signal(kind: str, **fields: Any) -> Signal:
    return received_signal(kind, received_at=runtime().clock.now(),
                           remote_addr=request.remote_addr,
                           user_agent=request.user_agent.string or "", **fields)


# --- Heartbeat API (§3): the UUID is the secret --------------------------------------------

def ping_kind(signal: str | None) -> tuple[str, int | None]:
    """(kind, exit code) for the last part of a ping URL: none, start/fail/log or 0-255."""
    if signal is None:
        return "ok", None
    if signal in PING_SIGNALS:
        return PING_SIGNALS[signal], None
    if signal.isascii() and signal.isdigit() and len(signal) <= 3:
        exit_code = int(signal)
        if exit_code > 255:
            raise ValidationFailed({"exit_code": ["Must be between 0 and 255."]})
        return kind_for_exit_code(exit_code), exit_code
    raise NotFound(f"Unknown ping signal: {signal[:32]!r}")


@ping_bp.route(PING_RULE, methods=PING_METHODS)
@ping_bp.route(PING_SIGNAL_RULE, methods=PING_METHODS)
def ping(uuid: str, signal: str | None = None) -> Response:
    """Pings with a body or a query (and every refused ping); ping_fast_path.py takes the rest."""
    application_uuid = parse_uuid(uuid)
    kind, exit_code = ping_kind(signal)
    rid = request.args.get("rid")
    if rid is not None:
        rid = parse_uuid(rid)
    message = storable_text(read_body()[:MAX_PING_MESSAGE_BYTES].decode("utf-8", errors="replace"))
    runtime().writer.accept(application_uuid, _client_signal(
        kind, exit_code=exit_code, rid=rid, message=message))
    return Response(PING_ANSWER, status=200, mimetype="text/plain")


@api_bp.post("/applications/<uuid>/heartbeats")
def create_heartbeat(uuid: str):
    application_uuid = parse_uuid(uuid)
    fields = HeartbeatInSchema().load(json_body(allow_empty=True))
    kind = fields.pop("status")
    accepted = runtime().writer.accept(application_uuid, _client_signal(
        kind, source="api", message=fields.get("message", ""),
        duration_ms=fields.get("duration_ms"), exit_code=fields.get("exit_code"),
        metadata=fields.get("metadata")))
    return HeartbeatOutSchema().dump(accepted.heartbeat), 202


# --- Management API (§4): needs a key ------------------------------------------------------

@api_bp.before_request
def _authenticate() -> None:
    if request.endpoint in PUBLIC_API_ENDPOINTS:
        return
    refuse_while_database_down()
    require_api_key()


@api_bp.get("/applications")
def list_applications():
    args = query_args(ApplicationListQuerySchema())
    items, next_cursor = applications.list_applications(
        args.get("status"), args.get("tag"), args["limit"], args.get("cursor"))
    return ApplicationPageSchema().dump({"items": items, "next_cursor": next_cursor})


@api_bp.post("/applications")
def create_application():
    fields = ApplicationInSchema().load(json_body())
    application = applications.create_application(fields, runtime().clock.now())
    return ApplicationOutSchema().dump(application), 201


@api_bp.get("/applications/<uuid>")
def get_application(uuid: str):
    return ApplicationOutSchema().dump(applications.get_application(parse_uuid(uuid)))


@api_bp.patch("/applications/<uuid>")
def update_application(uuid: str):
    application_uuid = parse_uuid(uuid)
    fields = ApplicationInSchema(partial=True).load(json_body())
    application = applications.update_application(application_uuid, fields, runtime().clock.now())
    return ApplicationOutSchema().dump(application)


@api_bp.delete("/applications/<uuid>")
def delete_application(uuid: str):
    applications.delete_application(parse_uuid(uuid))
    return "", 204


@api_bp.post("/applications/<uuid>/pause")
def pause_application(uuid: str):
    application = applications.pause_application(parse_uuid(uuid), runtime().clock.now())
    return ApplicationOutSchema().dump(application)


@api_bp.post("/applications/<uuid>/resume")
def resume_application(uuid: str):
    application = applications.resume_application(parse_uuid(uuid), runtime().clock.now())
    return ApplicationOutSchema().dump(application)


@api_bp.get("/applications/<uuid>/heartbeats")
def list_heartbeats(uuid: str):
    args = query_args(PageQuerySchema())
    items, next_cursor = applications.list_heartbeats(
        parse_uuid(uuid), args["limit"], args.get("cursor"))
    return HeartbeatPageSchema().dump({"items": items, "next_cursor": next_cursor})


@api_bp.get("/applications/<uuid>/incidents")
def list_incidents(uuid: str):
    args = query_args(PageQuerySchema())
    items, next_cursor = applications.list_incidents(
        parse_uuid(uuid), args["limit"], args.get("cursor"))
    return IncidentPageSchema().dump({"items": items, "next_cursor": next_cursor})


@api_bp.get("/channels")
def list_channels():
    return ChannelListSchema().dump({"items": channels.list_channels()})


@api_bp.post("/channels")
def create_channel():
    fields = ChannelInSchema().load(json_body())
    channel = channels.create_channel(fields, runtime().clock.now())
    return ChannelOutSchema().dump(channel), 201


@api_bp.get("/channels/<int:channel_id>")
def get_channel(channel_id: int):
    return ChannelOutSchema().dump(channels.get_channel(channel_id))


@api_bp.patch("/channels/<int:channel_id>")
def update_channel(channel_id: int):
    fields = ChannelInSchema(partial=True).load(json_body())
    channel = channels.update_channel(channel_id, fields, runtime().clock.now())
    return ChannelOutSchema().dump(channel)


@api_bp.delete("/channels/<int:channel_id>")
def delete_channel(channel_id: int):
    channels.delete_channel(channel_id)
    return "", 204


@api_bp.post("/channels/<int:channel_id>/test")
def test_channel(channel_id: int):
    return ChannelTestResultSchema().dump(channels.send_test_alert(channel_id))


@api_bp.get("/alerts")
def list_alerts():
    args = query_args(AlertListQuerySchema())
    items, next_cursor = alert_manager.list_alerts(args.get("state"), args["limit"],
                                                   args.get("cursor"))
    return AlertPageSchema().dump({"items": items, "next_cursor": next_cursor})


@api_bp.get("/alerts/<int:alert_id>")
def get_alert(alert_id: int):
    alert = alert_manager.get_alert(alert_id)
    alert.attempts = alert_manager.alert_attempts(alert)
    return AlertDetailSchema().dump(alert)


@api_bp.post("/alerts/<int:alert_id>/retry")
def retry_alert(alert_id: int):
    state = runtime()
    alert = alert_manager.retry_alert(alert_id, state.clock.now(),
                                      state.settings.ALERT_MAX_AGE_SECONDS)
    state.deliverer.wake()
    return AlertOutSchema().dump(alert)
