"""HTTP routes: thin views that parse, call one function and serialize."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request

import acknowledgements
import alert_manager
import applications
import channels
import incidents
import maintenance
from alert_schemas import (
    AlertDetailSchema,
    AlertListQuerySchema,
    AlertOutSchema,
    AlertPageSchema,
    ChannelInSchema,
    ChannelListSchema,
    ChannelOutSchema,
    ChannelTestResultSchema,
)
from auth import require_api_key
from database import refuse_while_database_down
from exceptions import DatabaseUnavailable, SlugPingNotFound
from incident_schemas import (
    AcknowledgeInSchema,
    IncidentListQuerySchema,
    IncidentOutSchema,
    IncidentPageSchema,
    MaintenanceWindowInSchema,
    MaintenanceWindowListQuerySchema,
    MaintenanceWindowOutSchema,
    MaintenanceWindowPageSchema,
    SnoozeInSchema,
)
from ingest.signals import (
    PING_ANSWER,
    PING_BODY_LIMIT_HEADER,
    PING_CREATED_ANSWER,
    PING_METHODS,
    PING_RULE,
    PING_SIGNAL_RULE,
    SLUG_PING_SIGNAL_RULE,
    Signal,
    is_slug_ping,
    ping_kind,
    ping_message,
    received_signal,
)
from ingest.slug_routes import accept_slug_ping
from runtime import current_runtime
from schemas import (
    ApplicationInSchema,
    ApplicationListQuerySchema,
    ApplicationOutSchema,
    ApplicationPageSchema,
    HeartbeatInSchema,
    HeartbeatOutSchema,
    HeartbeatPageSchema,
    PageQuerySchema,
)
from utils.request_input import json_body, parse_uuid, query_args, read_body

ping_bp = Blueprint("ping", __name__)
api_bp = Blueprint("api", __name__, url_prefix="/api/v1")

PUBLIC_API_ENDPOINTS = {"api.create_heartbeat"}


def _now():
    return current_runtime().clock.now()


def _client_signal(kind: str, **fields: Any) -> Signal:
    return received_signal(kind, received_at=_now(),
                           remote_addr=request.remote_addr,
                           user_agent=request.user_agent.string or "", **fields)


# --- Heartbeat API (§3): the UUID is the secret --------------------------------------------

@ping_bp.after_request
def _say_body_limit(response: Response) -> Response:
    response.headers.setdefault(*PING_BODY_LIMIT_HEADER)
    return response


@ping_bp.route(PING_RULE, methods=PING_METHODS)
@ping_bp.route(PING_SIGNAL_RULE, methods=PING_METHODS)
def ping(uuid: str, signal: str | None = None) -> Response:
    """Pings with a body or a query, and malformed ones; ingest/fast_path.py takes the rest."""
    if is_slug_ping(uuid, signal):  # /ping/<ping-key>/<slug>
        return slug_ping(uuid, signal)
    application_uuid = parse_uuid(uuid)
    kind, exit_code = ping_kind(signal)
    current_runtime().writer.accept(application_uuid, _ping_signal(kind, exit_code))
    return Response(PING_ANSWER, status=200, mimetype="text/plain")


@ping_bp.route(SLUG_PING_SIGNAL_RULE, methods=PING_METHODS)
def slug_ping(ping_key: str, slug: str, signal: str | None = None) -> Response:
    """A slug ping (§9) with a body or a query; `?create=1` creates a missing slug (201)."""
    kind, exit_code = ping_kind(signal)
    runtime, now = current_runtime(), _now()
    if request.args.get("create") != "1":
        route = runtime.slug_routes.route_to_application(ping_key, slug, now)
        accept_slug_ping(runtime.writer, route, _ping_signal(kind, exit_code))
        return Response(PING_ANSWER, status=200, mimetype="text/plain")
    route = runtime.slug_routes.resolve(ping_key, slug, now)
    if not route.looked_up:
        raise DatabaseUnavailable(message="The database is unavailable: a slug cannot be "
                                          "created until it is back.")
    if route.ping_key_id is None:
        raise SlugPingNotFound()
    if route.application_uuid is not None:
        runtime.writer.accept(route.application_uuid, _ping_signal(kind, exit_code))
        return Response(PING_ANSWER, status=200, mimetype="text/plain")
    fields = ApplicationInSchema().load({"name": slug, "slug": slug})
    application = applications.create_for_slug_ping(fields, now)
    runtime.writer.accept(application.uuid, _ping_signal(kind, exit_code))
    return Response(PING_CREATED_ANSWER, status=201, mimetype="text/plain")


def _ping_signal(kind: str, exit_code: int | None) -> Signal:
    """The heartbeat a ping URL's request says: its signal, ?rid=, body and method."""
    rid = request.args.get("rid")
    if rid is not None:
        rid = parse_uuid(rid)
    return _client_signal(kind, exit_code=exit_code, rid=rid, message=ping_message(read_body()),
                          method=request.method)


@api_bp.post("/applications/<uuid>/heartbeats")
def create_heartbeat(uuid: str):
    application_uuid = parse_uuid(uuid)
    fields = HeartbeatInSchema().load(json_body(allow_empty=True))
    kind = fields.pop("status")
    accepted = current_runtime().writer.accept(application_uuid, _client_signal(
        kind, source="api", message=fields.get("message", ""),
        duration_ms=fields.get("duration_ms"), exit_code=fields.get("exit_code"),
        metadata_json=fields.get("metadata")))
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
    application = applications.create_application(fields, _now())
    return ApplicationOutSchema().dump(application), 201


@api_bp.get("/applications/<uuid>")
def get_application(uuid: str):
    return ApplicationOutSchema().dump(applications.get_application(parse_uuid(uuid)))


@api_bp.patch("/applications/<uuid>")
def update_application(uuid: str):
    application_uuid = parse_uuid(uuid)
    fields = ApplicationInSchema(partial=True).load(json_body())
    application = applications.update_application(application_uuid, fields, _now())
    return ApplicationOutSchema().dump(application)


@api_bp.delete("/applications/<uuid>")
def delete_application(uuid: str):
    applications.delete_application(parse_uuid(uuid), _now())
    return "", 204


@api_bp.post("/applications/<uuid>/pause")
def pause_application(uuid: str):
    application = applications.pause_application(parse_uuid(uuid), _now())
    return ApplicationOutSchema().dump(application)


@api_bp.post("/applications/<uuid>/resume")
def resume_application(uuid: str):
    application = applications.resume_application(parse_uuid(uuid), _now())
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
    channel = channels.create_channel(fields, _now())
    return ChannelOutSchema().dump(channel), 201


@api_bp.get("/channels/<int:channel_id>")
def get_channel(channel_id: int):
    return ChannelOutSchema().dump(channels.get_channel(channel_id))


@api_bp.patch("/channels/<int:channel_id>")
def update_channel(channel_id: int):
    fields = ChannelInSchema(partial=True).load(json_body())
    channel = channels.update_channel(channel_id, fields, _now())
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
    runtime = current_runtime()
    alert = alert_manager.retry_alert(alert_id, runtime.clock.now(),
                                      runtime.settings.ALERT_MAX_AGE_SECONDS)
    runtime.deliverer.wake()
    return AlertOutSchema().dump(alert)


# --- Incident response (§8) ----------------------------------------------------------------

@api_bp.get("/incidents")
def list_all_incidents():
    args = query_args(IncidentListQuerySchema())
    items, next_cursor = incidents.list_incidents(args.get("state"), args["limit"],
                                                  args.get("cursor"))
    return IncidentPageSchema().dump({"items": items, "next_cursor": next_cursor})


@api_bp.get("/incidents/<int:incident_id>")
def get_incident(incident_id: int):
    return IncidentOutSchema().dump(incidents.get_incident(incident_id))


@api_bp.post("/incidents/<int:incident_id>/acknowledge")
def acknowledge_incident(incident_id: int):
    fields = AcknowledgeInSchema().load(json_body(allow_empty=True))
    incident = acknowledgements.acknowledge_by_api_key(incident_id, g.api_key_id,
                                                       fields.get("note"), _now())
    return IncidentOutSchema().dump(incident)


@api_bp.post("/applications/<uuid>/snooze")
def snooze_application(uuid: str):
    application_uuid = parse_uuid(uuid)
    fields = SnoozeInSchema().load(json_body())
    application = applications.get_application(application_uuid, for_update=True)
    maintenance.snooze(application, fields["until"], _now())
    return ApplicationOutSchema().dump(application)


@api_bp.delete("/applications/<uuid>/snooze")
def end_snooze(uuid: str):
    application = applications.get_application(parse_uuid(uuid), for_update=True)
    maintenance.end_snooze(application, _now())
    return ApplicationOutSchema().dump(application)


@api_bp.get("/maintenance-windows")
def list_maintenance_windows():
    args = query_args(MaintenanceWindowListQuerySchema())
    items, next_cursor = maintenance.list_windows(args.get("active"), _now(), args["limit"],
                                                  args.get("cursor"))
    return MaintenanceWindowPageSchema().dump({"items": items, "next_cursor": next_cursor})


@api_bp.post("/maintenance-windows")
def create_maintenance_window():
    fields = MaintenanceWindowInSchema().load(json_body())
    return MaintenanceWindowOutSchema().dump(maintenance.create_window(fields, _now())), 201


@api_bp.get("/maintenance-windows/<int:window_id>")
def get_maintenance_window(window_id: int):
    return MaintenanceWindowOutSchema().dump(maintenance.get_window(window_id))


@api_bp.patch("/maintenance-windows/<int:window_id>")
def update_maintenance_window(window_id: int):
    fields = MaintenanceWindowInSchema(partial=True).load(json_body())
    return MaintenanceWindowOutSchema().dump(maintenance.update_window(window_id, fields, _now()))


@api_bp.delete("/maintenance-windows/<int:window_id>")
def delete_maintenance_window(window_id: int):
    maintenance.delete_window(window_id, _now())
    return "", 204


@api_bp.post("/maintenance-windows/<int:window_id>/end")
def end_maintenance_window(window_id: int):
    return MaintenanceWindowOutSchema().dump(maintenance.end_window(window_id, _now()))
