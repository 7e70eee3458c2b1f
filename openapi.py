"""The OpenAPI 3 document (/openapi.json), built with apispec from the schemas in schemas.py.

Every route the app serves has one entry in OPERATIONS; adding a route means adding its entry
(a test compares this table with the app's URL map). Paths use Flask's rule syntax and are
converted here, with a path parameter for each `<name>`.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, jsonify, render_template
from marshmallow import Schema

import alert_schemas as alerting
import healthchecks_schemas as healthchecks
import incident_schemas as incidents
import operations_schemas
import schemas

OPENAPI_VERSION = "3.0.3"
API_VERSION = "1.0.0"

ERROR_CODES = {
    400: "MALFORMED_REQUEST: bad JSON or bad UUID syntax",
    401: "UNAUTHORIZED: no valid API key",
    403: "FORBIDDEN: the key is read-only, or the CSRF token is missing",
    404: "Not found (code names what: APPLICATION_NOT_FOUND, ERROR_NOT_FOUND, ...)",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE: the body must be JSON",
    422: "VALIDATION_ERROR: details maps each field to its messages",
    429: "RATE_LIMITED (see Retry-After)",
    500: "INTERNAL_ERROR",
    503: "DATABASE_UNAVAILABLE or SERVICE_UNAVAILABLE (see Retry-After)",
}
# PATCH bodies: any subset of the fields; an application's UUID cannot be changed.
APPLICATION_CHANGE = schemas.ApplicationInSchema(partial=True, exclude=("uuid",))
CHANNEL_CHANGE = alerting.ChannelInSchema(partial=True)
MAINTENANCE_WINDOW_CHANGE = incidents.MaintenanceWindowInSchema(partial=True)
# Every endpoint can answer these.
COMMON_ERRORS = (405, 413, 429, 500, 503)
API_ERRORS = (401, 403)


@dataclasses.dataclass(frozen=True)
class Operation:
    """One method on one path, with what it takes and what it answers."""

    path: str
    method: str
    summary: str
    tag: str
    responses: dict[int, Any]
    query: type[Schema] | None = None
    body: type[Schema] | Schema | str | None = None
    errors: tuple[int, ...] = ()
    needs_key: bool = True
    description: str = ""
    body_required: bool = True


def _json(schema: type[Schema] | Schema, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _media(media_type: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {media_type: {"schema": {"type": "string"}}}}


HTML = _media("text/html", "An HTML page")
BADGE = {"description": "The badge: SVG, or JSON for .json and .shields",
         "content": {"image/svg+xml": {"schema": {"type": "string"}},
                     "application/json": {"schema": {"type": "object"}}}}
REDIRECT = {"description": "Redirect (to the dashboard or the sign-in page)"}
# Every ping answer says how much of a body is kept, as Healthchecks' do.
PING_HEADERS = {"Ping-Body-Limit": {"description": "Bytes of a request body kept as the "
                                                   "heartbeat's message",
                                    "schema": {"type": "integer"}}}
PING_OK = {**_media("text/plain", "`OK`: the heartbeat was recorded"), "headers": PING_HEADERS}
PING_CREATED = {**_media("text/plain", "`Created`: the slug was missing and `?create=1` "
                                       "created it (a day's period, an hour's grace); the "
                                       "heartbeat was recorded"),
                "headers": PING_HEADERS}
SLUG_PING = ("A slug ping (`/ping/<ping-key>/<slug>[/<signal>]`) acts as the UUID URL does; "
             "the key comes from `flask ping-key create`. `?create=1` creates a missing slug "
             "(`201`). A wrong or revoked key and an unknown slug answer the same `404`.")

HEALTHCHECKS_API = ("Healthchecks' management API, as its documentation describes it; the key "
                    "may also come as `api_key` in a POST's JSON body, whatever its "
                    "Content-Type. Read-only keys get `unique_key` instead of `uuid`, the URLs "
                    "and `channels`.")


CONSOLE_FORM = ("A console form (application/x-www-form-urlencoded) with the session's "
                "`csrf_token`; a read-only session, or a POST without the token, gets 403. "
                "Fields as the API's schema of the same change.")
# The operator console (SPEC §10, console/): HTML pages of a signed-in browser session.
CONSOLE_PAGES = (
    ("/applications", "Applications: list, filter by status and tag, search by name"),
    ("/applications/new", "New application form"),
    ("/applications/<uuid:uuid>", "One application: status, ping URL, runs, timelines, log"),
    ("/applications/<uuid:uuid>/edit", "Edit application form"),
    ("/applications/<uuid:uuid>/delete", "Confirm deleting an application"),
    ("/applications/<uuid:uuid>/heartbeats/<uuid:heartbeat_uuid>", "One heartbeat and its body"),
    ("/incidents", "Incidents of every application"),
    ("/alerts", "Alerts: queue and history"),
    ("/alerts/<int:alert_id>", "One alert with its delivery attempts"),
    ("/channels", "Channels and their breakers"),
    ("/channels/new", "New channel form (per kind)"),
    ("/channels/<int:channel_id>", "One channel: breaker, test, edit form"),
    ("/maintenance", "Maintenance windows, and the form to create one"),
    ("/errors", "The error log"),
    ("/errors/<int:error_id>", "One error with its stack trace"),
)
CONSOLE_ACTIONS = (
    ("/applications/new", "Create an application"),
    ("/applications/<uuid:uuid>/edit", "Change an application"),
    ("/applications/<uuid:uuid>/pause", "Pause an application"),
    ("/applications/<uuid:uuid>/resume", "Resume an application"),
    ("/applications/<uuid:uuid>/snooze", "Snooze an application (`minutes`)"),
    ("/applications/<uuid:uuid>/snooze/end", "End an application's snooze"),
    ("/applications/<uuid:uuid>/delete", "Delete an application"),
    ("/incidents/<int:incident_id>/acknowledge", "Acknowledge an incident"),
    ("/alerts/<int:alert_id>/retry", "Re-queue a dead or failed alert"),
    ("/channels/new", "Create a channel"),
    ("/channels/<int:channel_id>", "Change a channel"),
    ("/channels/<int:channel_id>/test", "Send a test alert; the page shows its outcome"),
    ("/channels/<int:channel_id>/delete", "Delete a channel"),
    ("/maintenance/new", "Create a maintenance window"),
    ("/maintenance/<int:window_id>/end", "End a maintenance window now"),
    ("/maintenance/<int:window_id>/delete", "Delete a maintenance window"),
    ("/errors/<int:error_id>/resolve", "Resolve an error"),
)


def console_operations() -> list[Operation]:
    pages = [Operation(path, "get", summary, "console", {200: HTML, 302: REDIRECT},
                       errors=(404,), needs_key=False) for path, summary in CONSOLE_PAGES]
    actions = [Operation(path, "post", summary, "console",
                         {302: REDIRECT, 200: HTML, 422: HTML},
                         body="application/x-www-form-urlencoded", errors=(403, 404),
                         needs_key=False, description=CONSOLE_FORM)
               for path, summary in CONSOLE_ACTIONS]
    return pages + actions


def healthchecks_operations(version: int) -> list[Operation]:
    """Healthchecks' API under /api/v<version>/ (healthchecks_api.py)."""
    prefix, tag = f"/api/v{version}", f"healthchecks-v{version}"
    check = _json(healthchecks.CheckSchema)
    operations = [
        Operation(f"{prefix}/checks/", "get", "List checks", tag,
                  {200: _json(healthchecks.CheckListSchema)}, query=healthchecks.ChecksQuerySchema,
                  errors=(422,), description=HEALTHCHECKS_API),
        Operation(f"{prefix}/checks/", "post", "Create a check", tag,
                  {201: _json(healthchecks.CheckSchema, "Created"),
                   200: _json(healthchecks.CheckSchema, "A check matched `unique`: updated")},
                  body=healthchecks.CheckSpecSchema, body_required=False,
                  errors=(400, 409, 422)),
        Operation(f"{prefix}/checks/<uuid>", "get", "Get a check by UUID or unique key", tag,
                  {200: check}, errors=(400, 404)),
        Operation(f"{prefix}/checks/<uuid>", "post", "Update a check", tag, {200: check},
                  body=healthchecks.CheckSpecSchema, body_required=False,
                  errors=(400, 404, 409, 422), description="Fields left out keep their value."),
        Operation(f"{prefix}/checks/<uuid>", "delete", "Delete a check (answers it)", tag,
                  {200: check}, errors=(400, 404)),
        Operation(f"{prefix}/checks/<uuid>/pause", "post", "Pause a check", tag, {200: check},
                  errors=(400, 404)),
        Operation(f"{prefix}/checks/<uuid>/resume", "post", "Resume a paused check", tag,
                  {200: check}, errors=(400, 404, 409)),
        Operation(f"{prefix}/checks/<uuid>/pings/", "get", "A check's latest pings", tag,
                  {200: _json(healthchecks.PingListSchema)}, errors=(400, 404)),
        Operation(f"{prefix}/checks/<uuid>/pings/<int:n>/body", "get", "A ping's body", tag,
                  {200: _media("text/plain", "The body as it was received")},
                  errors=(400, 404)),
        Operation(f"{prefix}/checks/<uuid>/flips/", "get",
                  "A check's changes between up and down", tag,
                  {200: _json(healthchecks.FlipListSchema)}, query=healthchecks.FlipsQuerySchema,
                  errors=(400, 404, 422)),
        Operation(f"{prefix}/badges/", "get", "Badge URLs of every tag", tag,
                  {200: _json(healthchecks.BadgeListSchema)}),
        Operation(f"{prefix}/status/", "get", "OK when the database answers", tag,
                  {200: _media("text/plain", "`OK`")}, needs_key=False),
    ]
    if version >= 2:  # /api/v1/channels is ours
        operations.append(Operation(f"{prefix}/channels/", "get", "List channels", tag,
                                    {200: _json(healthchecks.IntegrationListSchema)}))
    return operations


OPERATIONS: list[Operation] = [
    # Heartbeat API (§3).
    *[Operation("/ping/<uuid>", method, "Report success", "heartbeats", {200: PING_OK},
                body="text/plain", errors=(400, 404), needs_key=False)
      for method in ("get", "post", "head")],
    *[Operation("/ping/<uuid>/<signal>", method,
                "Report start, fail, log, or an exit status (0-255)", "heartbeats",
                {200: PING_OK, 201: PING_CREATED}, body="text/plain", errors=(400, 404, 422),
                needs_key=False,
                description="`signal` is `start`, `fail`, `log` or an exit status; "
                            "`?rid=<uuid>` pairs a start with its end. When the first part "
                            "is not a UUID, this is `/ping/<ping-key>/<slug>`: " + SLUG_PING)
      for method in ("get", "post", "head")],
    *[Operation("/ping/<ping_key>/<slug>/<signal>", method,
                "Report start, fail, log, or an exit status (0-255) by slug", "heartbeats",
                {200: PING_OK, 201: PING_CREATED}, body="text/plain", errors=(400, 404, 422),
                needs_key=False,
                description=SLUG_PING + " `signal` is `start`, `fail`, `log` or an exit status; "
                                        "`?rid=<uuid>` pairs a start with its end.")
      for method in ("get", "post", "head")],
    Operation("/api/v1/applications/<uuid>/heartbeats", "post", "Send a heartbeat as JSON",
              "heartbeats", {202: _json(schemas.HeartbeatOutSchema, "Accepted")},
              body=schemas.HeartbeatInSchema, errors=(400, 404, 415, 422), needs_key=False),
    # Applications (§4).
    Operation("/api/v1/applications", "get", "List applications", "applications",
              {200: _json(schemas.ApplicationPageSchema)},
              query=schemas.ApplicationListQuerySchema, errors=(422,)),
    Operation("/api/v1/applications", "post", "Create an application", "applications",
              {201: _json(schemas.ApplicationOutSchema, "Created")},
              body=schemas.ApplicationInSchema, errors=(400, 409, 415, 422)),
    Operation("/api/v1/applications/<uuid>", "get", "Get an application", "applications",
              {200: _json(schemas.ApplicationOutSchema)}, errors=(400, 404)),
    Operation("/api/v1/applications/<uuid>", "patch", "Change an application", "applications",
              {200: _json(schemas.ApplicationOutSchema)}, body=APPLICATION_CHANGE,
              errors=(400, 404, 415, 422), description="Send any subset of the fields."),
    Operation("/api/v1/applications/<uuid>", "delete", "Delete an application",
              "applications", {204: {"description": "Deleted"}}, errors=(400, 404)),
    Operation("/api/v1/applications/<uuid>/pause", "post", "Stop watching an application",
              "applications", {200: _json(schemas.ApplicationOutSchema)}, errors=(400, 404)),
    Operation("/api/v1/applications/<uuid>/resume", "post", "Watch an application again",
              "applications", {200: _json(schemas.ApplicationOutSchema)}, errors=(400, 404)),
    Operation("/api/v1/applications/<uuid>/heartbeats", "get",
              "List an application's heartbeats, newest first", "applications",
              {200: _json(schemas.HeartbeatPageSchema)}, query=schemas.PageQuerySchema,
              errors=(400, 404, 422)),
    Operation("/api/v1/applications/<uuid>/incidents", "get",
              "List an application's incidents, newest first", "applications",
              {200: _json(incidents.IncidentPageSchema)}, query=schemas.PageQuerySchema,
              errors=(400, 404, 422)),
    # Channels (§4).
    Operation("/api/v1/channels", "get", "List channels", "channels",
              {200: _json(alerting.ChannelListSchema)}),
    Operation("/api/v1/channels", "post", "Create a channel", "channels",
              {201: _json(alerting.ChannelOutSchema, "Created")}, body=alerting.ChannelInSchema,
              errors=(400, 415, 422)),
    Operation("/api/v1/channels/<int:channel_id>", "get", "Get a channel", "channels",
              {200: _json(alerting.ChannelOutSchema)}, errors=(404,)),
    Operation("/api/v1/channels/<int:channel_id>", "patch", "Change a channel", "channels",
              {200: _json(alerting.ChannelOutSchema)}, body=CHANNEL_CHANGE,
              errors=(400, 404, 415, 422), description="Send any subset of the fields."),
    Operation("/api/v1/channels/<int:channel_id>", "delete", "Delete a channel", "channels",
              {204: {"description": "Deleted"}}, errors=(404,)),
    Operation("/api/v1/channels/<int:channel_id>/test", "post",
              "Send a test alert and report the outcome", "channels",
              {200: _json(alerting.ChannelTestResultSchema)}, errors=(404,)),
    # Alerts (§4).
    Operation("/api/v1/alerts", "get", "List alerts", "alerts",
              {200: _json(alerting.AlertPageSchema)}, query=alerting.AlertListQuerySchema,
              errors=(422,)),
    Operation("/api/v1/alerts/<int:alert_id>", "get", "Get an alert with its delivery attempts",
              "alerts", {200: _json(alerting.AlertDetailSchema)}, errors=(404,)),
    Operation("/api/v1/alerts/<int:alert_id>/retry", "post", "Re-queue a dead alert", "alerts",
              {200: _json(alerting.AlertOutSchema)}, errors=(404, 409)),
    # Incident response and noise control (§8).
    Operation("/api/v1/incidents", "get",
              "List incidents of every application, newest first", "incidents",
              {200: _json(incidents.IncidentPageSchema)}, query=incidents.IncidentListQuerySchema,
              errors=(400, 422),
              description="`state`: `open` (not acknowledged), `acknowledged` or `resolved`."),
    Operation("/api/v1/incidents/<int:incident_id>", "get", "Get an incident", "incidents",
              {200: _json(incidents.IncidentOutSchema)}, errors=(404,)),
    Operation("/api/v1/incidents/<int:incident_id>/acknowledge", "post",
              "Acknowledge an incident: no more reminders or escalation", "incidents",
              {200: _json(incidents.IncidentOutSchema)}, body=incidents.AcknowledgeInSchema,
              errors=(400, 404, 409, 415, 422),
              description="The body (`{\"note\"}`) is optional. Acknowledging again changes "
                          "nothing; a resolved incident answers 409."),
    Operation("/api/v1/applications/<uuid>/snooze", "post",
              "Snooze an application: hold its alerts until a moment", "incidents",
              {200: _json(schemas.ApplicationOutSchema)}, body=incidents.SnoozeInSchema,
              errors=(400, 404, 415, 422),
              description="A maintenance window for this application from now until `until`."),
    Operation("/api/v1/applications/<uuid>/snooze", "delete", "End an application's snooze",
              "incidents", {200: _json(schemas.ApplicationOutSchema)}, errors=(400, 404)),
    Operation("/api/v1/maintenance-windows", "get", "List maintenance windows, newest first",
              "maintenance", {200: _json(incidents.MaintenanceWindowPageSchema)},
              query=incidents.MaintenanceWindowListQuerySchema, errors=(400, 422)),
    Operation("/api/v1/maintenance-windows", "post", "Create a maintenance window",
              "maintenance", {201: _json(incidents.MaintenanceWindowOutSchema, "Created")},
              body=incidents.MaintenanceWindowInSchema, errors=(400, 415, 422),
              description="One-off (`starts_at`, `ends_at`) or recurring (`cron`, `timezone`, "
                          "`duration_seconds`); scoped by `applications` and/or `tags` "
                          "(neither: every application)."),
    Operation("/api/v1/maintenance-windows/<int:window_id>", "get",
              "Get a maintenance window", "maintenance",
              {200: _json(incidents.MaintenanceWindowOutSchema)}, errors=(404,)),
    Operation("/api/v1/maintenance-windows/<int:window_id>", "patch",
              "Change a maintenance window", "maintenance",
              {200: _json(incidents.MaintenanceWindowOutSchema)}, body=MAINTENANCE_WINDOW_CHANGE,
              errors=(400, 404, 415, 422), description="Send any subset of the fields."),
    Operation("/api/v1/maintenance-windows/<int:window_id>", "delete",
              "Delete a maintenance window", "maintenance", {204: {"description": "Deleted"}},
              errors=(404,)),
    Operation("/api/v1/maintenance-windows/<int:window_id>/end", "post",
              "End the occurrence of a window in force now", "maintenance",
              {200: _json(incidents.MaintenanceWindowOutSchema)}, errors=(404,),
              description="A one-off window ends now; a recurring one goes on from its next "
                          "fire."),
    Operation("/acknowledge/<token>", "get", "Acknowledgement page of an alert's link",
              "incidents", {200: HTML}, errors=(404,), needs_key=False,
              description="The `ack_url` of a down alert: shows the incident and a button; "
                          "changes nothing."),
    Operation("/acknowledge/<token>", "post", "Acknowledge through an alert's link",
              "incidents", {200: HTML}, body="application/x-www-form-urlencoded",
              errors=(404,), needs_key=False,
              description="Form field `note` (optional). The signed token in the path is the "
                          "credential; it works while the incident is open."),
    # The error log (§4).
    Operation("/api/v1/errors", "get", "List error records, newest first (or export CSV)",
              "errors", {200: {"description": "A page of records, or CSV with ?format=csv",
                               "content": {"application/json": {
                                   "schema": operations_schemas.ErrorLogPageSchema},
                                   "text/csv": {"schema": {"type": "string"}}}}},
              query=operations_schemas.ErrorListQuerySchema, errors=(422,),
              description="`since`/`until` select records that occurred within the range."),
    Operation("/api/v1/errors/stats", "get", "Error totals and the current error rate",
              "errors", {200: _json(operations_schemas.ErrorStatsSchema)}),
    Operation("/api/v1/errors/<int:error_id>", "get", "Get an error record with its trace",
              "errors", {200: _json(operations_schemas.ErrorLogDetailSchema)}, errors=(404,)),
    Operation("/api/v1/errors/<int:error_id>/resolve", "post", "Mark an error resolved",
              "errors", {200: _json(operations_schemas.ErrorLogDetailSchema)}, errors=(404,)),
    # Watching itself (§6.7).
    Operation("/health", "get", "Liveness and summary", "service",
              {200: _json(operations_schemas.HealthSchema, "ok or degraded"),
               503: _json(operations_schemas.HealthSchema, "down")}, needs_key=False),
    Operation("/health/dependencies", "get", "Health of each dependency", "service",
              {200: _json(operations_schemas.DependenciesSchema)}, needs_key=False),
    Operation("/metrics", "get", "Prometheus metrics", "service",
              {200: _media("text/plain", "Prometheus text exposition")}, needs_key=False),
    Operation("/openapi.json", "get", "This document", "service",
              {200: {"description": "OpenAPI 3 document",
                     "content": {"application/json": {"schema": {"type": "object"}}}}},
              needs_key=False),
    Operation("/docs", "get", "API documentation page", "service", {200: HTML},
              needs_key=False),
    # Coming from Healthchecks (§9).
    *[operation for version in (3, 2, 1) for operation in healthchecks_operations(version)],
    # Status badges (§10): public, behind the badge key.
    Operation("/badge/<badge_key>/<target>.<any(svg,json,shields):fmt>", "get",
              "An application's badge (by slug, UUID or unique key), or all applications'",
              "badges", {200: BADGE}, errors=(404,), needs_key=False,
              description="`target` is an application, or the signature that "
                          "/api/v3/badges/ gives for all of them."),
    Operation("/badge/<badge_key>/<signature>/<path:tag>.<any(svg,json,shields):fmt>", "get",
              "A tag's badge", "badges", {200: BADGE}, errors=(404,), needs_key=False,
              description="URLs as /api/v3/badges/ lists them."),
    # Dashboard (§6.7): HTML, signed in with an API key (session cookie, CSRF token).
    Operation("/", "get", "Dashboard", "dashboard", {200: HTML, 302: REDIRECT},
              needs_key=False),
    Operation("/login", "get", "Sign-in form", "dashboard", {200: HTML}, needs_key=False),
    Operation("/login", "post", "Sign in with an API key", "dashboard",
              {302: REDIRECT, 200: HTML}, body="application/x-www-form-urlencoded",
              errors=(403,), needs_key=False,
              description="Form fields `api_key` and `csrf_token`."),
    Operation("/logout", "post", "Sign out", "dashboard", {302: REDIRECT},
              body="application/x-www-form-urlencoded", errors=(403,), needs_key=False,
              description="Form field `csrf_token`."),
    *console_operations(),
]

_RULE_PARAMETER = re.compile(
    r"<(?:(?P<converter>[a-z]+)(?:\((?P<arguments>[^)]*)\))?:)?(?P<name>\w+)>")


def openapi_path(rule: str) -> str:
    """Flask rule syntax to OpenAPI: /errors/<int:error_id> -> /errors/{error_id}."""
    return _RULE_PARAMETER.sub(lambda match: "{" + match["name"] + "}", rule)


def _path_parameters(rule: str) -> list[dict[str, Any]]:
    parameters = []
    for match in _RULE_PARAMETER.finditer(rule):
        schema = {"type": "integer"} if match["converter"] == "int" else {"type": "string"}
        if match["converter"] == "any":
            schema["enum"] = [value.strip() for value in match["arguments"].split(",")]
        elif match["name"] == "uuid":
            schema["format"] = "uuid"
        parameters.append({"in": "path", "name": match["name"], "required": True,
                           "schema": schema})
    return parameters


def _operation_spec(operation: Operation) -> dict[str, Any]:
    spec: dict[str, Any] = {"summary": operation.summary, "tags": [operation.tag],
                            "parameters": _path_parameters(operation.path)}
    if operation.description:
        spec["description"] = operation.description
    if operation.query is not None:
        spec["parameters"].append({"in": "query", "schema": operation.query})
    if isinstance(operation.body, str):
        spec["requestBody"] = {"required": False, "content": {
            operation.body: {"schema": {"type": "string"}}}}
    elif operation.body is not None:
        spec["requestBody"] = {"required": operation.body_required, "content": {
            "application/json": {"schema": operation.body}}}
    responses = {str(status): response for status, response in operation.responses.items()}
    errors = set(operation.errors) | set(COMMON_ERRORS)
    if operation.needs_key:
        errors |= set(API_ERRORS)
        spec["security"] = [{"bearer": []}, {"apiKey": []}]
    for status in sorted(errors):
        responses.setdefault(str(status), _json(operations_schemas.ErrorEnvelopeSchema,
                                                ERROR_CODES[status]))
    spec["responses"] = responses
    return spec


def build_openapi(title: str = "Heartbeat Monitor") -> dict[str, Any]:
    """The OpenAPI document of every operation in OPERATIONS."""
    spec = APISpec(title=title, version=API_VERSION, openapi_version=OPENAPI_VERSION,
                   plugins=[MarshmallowPlugin()],
                   info={"description": "Watches cron jobs and services through heartbeats. "
                                        "Every error is the envelope `ErrorEnvelope`."})
    spec.components.schema("ErrorEnvelope", schema=operations_schemas.ErrorEnvelopeSchema)
    spec.components.schema("ApplicationChange", schema=APPLICATION_CHANGE)
    spec.components.schema("ChannelChange", schema=CHANNEL_CHANGE)
    spec.components.schema("MaintenanceWindowChange", schema=MAINTENANCE_WINDOW_CHANGE)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.security_scheme("apiKey", {"type": "apiKey", "in": "header",
                                                "name": "X-Api-Key"})
    by_path: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        by_path.setdefault(operation.path, {})[operation.method] = _operation_spec(operation)
    for rule, operations in by_path.items():
        spec.path(path=openapi_path(rule), operations=operations)
    return spec.to_dict()


docs_bp = Blueprint("docs", __name__)


@functools.lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """The document, built once per process (it depends only on code)."""
    return build_openapi()


@docs_bp.get("/openapi.json")
def openapi_json():
    return jsonify(openapi_document())


@docs_bp.get("/docs")
def docs_page():
    document = openapi_document()
    return render_template("docs.html", document=document,
                           operations=list(_listed_operations(document)))


def _listed_operations(document: dict[str, Any]):
    """(tag, method, path, operation) in table order, for the docs page."""
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method != "head":
                yield operation["tags"][0], method.upper(), path, operation
