"""Healthchecks' management API (§9), as its documentation describes it, under /api/v3/ and
/api/v2/, and /api/v1/ for the paths that do not collide with ours (our /api/v1/channels keeps
its meaning). Thin views over healthchecks_mapping.py; errors are our envelope (§5).

Keys are our API keys, in `X-Api-Key` (or `Authorization: Bearer`) or, for a POST, as `api_key`
in its JSON body. A read-only key gets Healthchecks' read-only shapes and, as there, may only
list and get checks, list their flips and list badges. A POST body is JSON whatever its
Content-Type (as `curl --data` sends it), and may be empty.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Flask, Response, g, request
from sqlalchemy import select, text

import applications
from auth import presented_key, require_api_key
from badges import ALL, badge_key, tag_badge_urls
from channels import list_channels
from database import db, refuse_while_database_down
from exceptions import ApplicationNotFound, Conflict
from healthchecks_mapping import (
    View,
    application_fields,
    check_view,
    find_checks,
    flips,
    integration_view,
    last_run_duration_ms,
    ping_body,
    ping_log,
    unique_match,
)
from healthchecks_schemas import CheckSpecSchema, ChecksQuerySchema, FlipsQuerySchema
from models import Application, ApplicationTag
from runtime import current_runtime
from schemas import public_base_url
from utils.request_input import json_body, parse_uuid

# Checks, badges and status: under /api/v1/, /api/v2/ and /api/v3/.
checks_bp = Blueprint("healthchecks", __name__)
# Channels: under /api/v2/ and /api/v3/ only.
channels_bp = Blueprint("healthchecks_channels", __name__)
BLUEPRINT_VERSIONS = {f"{blueprint.name}_v{version}": version
                      for blueprint, versions in ((checks_bp, (1, 2, 3)), (channels_bp, (2, 3)))
                      for version in versions}
READ_ONLY_VIEWS = {"list_checks", "get_check", "list_flips", "list_badges"}
PUBLIC_VIEWS = {"status"}
# Keys travel in a header, never in cookies: any page may call the API (as Healthchecks allows).
CORS_HEADERS = {"Access-Control-Allow-Origin": "*",
                "Access-Control-Allow-Headers": "X-Api-Key, Content-Type",
                "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
                "Access-Control-Max-Age": "600"}


def register_healthchecks_api(app: Flask) -> None:
    for name, version in BLUEPRINT_VERSIONS.items():
        blueprint = checks_bp if name.startswith(f"{checks_bp.name}_v") else channels_bp
        app.register_blueprint(blueprint, url_prefix=f"/api/v{version}", name=name)


def _view_name() -> str:
    return (request.endpoint or "").rsplit(".", 1)[-1]


def _authenticate() -> Response | None:
    if request.method == "OPTIONS":  # a browser's preflight: no key is sent with it
        return Response(status=204)
    g.healthchecks_version = BLUEPRINT_VERSIONS[request.blueprint]
    g.healthchecks_body = json_body(allow_empty=True, any_media_type=True) \
        if request.method == "POST" else {}
    if _view_name() in PUBLIC_VIEWS:
        return None
    refuse_while_database_down()
    key = presented_key() or g.healthchecks_body.get("api_key")
    api_key = require_api_key(key if isinstance(key, str) else None,
                              read_only_allowed=_view_name() in READ_ONLY_VIEWS)
    g.healthchecks_read_only = api_key.read_only
    return None


def _cors(response: Response) -> Response:
    response.headers.update(CORS_HEADERS)
    return response


for _blueprint in (checks_bp, channels_bp):
    _blueprint.before_request(_authenticate)
    _blueprint.after_request(_cors)


def _view() -> View:
    now = current_runtime().clock.now()
    return View(version=g.healthchecks_version, read_only=g.healthchecks_read_only, now=now,
                site_root=public_base_url(), badge_key=badge_key(now))


def _check(application: Application, view: View | None = None) -> dict[str, Any]:
    view = view or _view()
    return check_view(application, view, last_run_duration_ms(application))


def _find(identifier: str) -> Application:
    """By UUID or, for the views that allow it, by unique key."""
    if applications.UNIQUE_KEY_PATTERN.fullmatch(identifier):
        application = applications.application_by_unique_key(identifier)
        if application is None:
            raise ApplicationNotFound(identifier)
        return application
    return applications.get_application(parse_uuid(identifier))


def _spec() -> dict[str, Any]:
    return CheckSpecSchema().load(g.healthchecks_body)


# --- Checks --------------------------------------------------------------------------------

@checks_bp.get("/checks/")
def list_checks():
    args = ChecksQuerySchema().load({"tag": request.args.getlist("tag"),
                                     **({"slug": request.args["slug"]}
                                        if "slug" in request.args else {})})
    view = _view()
    found = find_checks(args["tag"], args.get("slug"), with_channels=not view.read_only)
    return {"checks": [check_view(application, view, duration)
                       for application, duration in found]}


@checks_bp.post("/checks/")
def create_check():
    """Create a check; with `unique`, update the first match instead (200, not 201)."""
    spec = _spec()
    now = current_runtime().clock.now()
    existing = unique_match(spec)
    fields = application_fields(spec, g.healthchecks_version,
                                existing.id if existing is not None else None)
    if existing is not None:
        return _check(applications.update_application(existing.uuid, fields, now)), 200
    application = applications.create_application({"name": "", **fields}, now)
    return _check(application), 201


@checks_bp.get("/checks/<uuid>")
def get_check(uuid: str):
    return _check(_find(uuid))


@checks_bp.post("/checks/<uuid>")
def update_check(uuid: str):
    application = applications.get_application(parse_uuid(uuid))
    fields = application_fields(_spec(), g.healthchecks_version, application.id)
    return _check(applications.update_application(application.uuid, fields,
                                                  current_runtime().clock.now()))


@checks_bp.delete("/checks/<uuid>")
def delete_check(uuid: str):
    """Delete the check; answers it as it was."""
    application = applications.get_application(parse_uuid(uuid))
    check = _check(application)
    applications.delete_application(application.uuid, current_runtime().clock.now())
    return check


@checks_bp.post("/checks/<uuid>/pause")
def pause_check(uuid: str):
    return _check(applications.pause_application(parse_uuid(uuid), current_runtime().clock.now()))


@checks_bp.post("/checks/<uuid>/resume")
def resume_check(uuid: str):
    """Resume a paused check (it becomes new); 409 for a check that is not paused."""
    application = applications.get_application(parse_uuid(uuid))
    if application.status != "paused":
        raise Conflict("The check is not paused.")
    return _check(applications.resume_application(application.uuid, current_runtime().clock.now()))


@checks_bp.get("/checks/<uuid>/pings/")
def list_pings(uuid: str):
    return {"pings": ping_log(applications.get_application(parse_uuid(uuid)), _view())}


@checks_bp.get("/checks/<uuid>/pings/<int:n>/body")
def get_ping_body(uuid: str, n: int):
    body = ping_body(applications.get_application(parse_uuid(uuid)), n)
    return Response(body, mimetype="text/plain")


@checks_bp.get("/checks/<uuid>/flips/")
def list_flips(uuid: str):
    args = FlipsQuerySchema().load(request.args.to_dict())
    since = _unix_time(args.get("start"))
    if args.get("seconds"):  # 0, like none, filters nothing
        recent = current_runtime().clock.now() - dt.timedelta(seconds=args["seconds"])
        since = max(since, recent) if since else recent
    return {"flips": flips(_find(uuid), since, _unix_time(args.get("end")))}


def _unix_time(seconds: int | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


# --- Channels, badges, status --------------------------------------------------------------

@channels_bp.get("/channels/")
def list_integrations():
    return {"channels": [integration_view(channel) for channel in list_channels()]}


@checks_bp.get("/badges/")
def list_badges():
    """Every tag's badge URLs, and `*` for all checks."""
    view = _view()
    tags = db.session.execute(select(ApplicationTag.tag).distinct()).scalars()
    return {"badges": {tag: tag_badge_urls(view.site_root, view.badge_key, tag)
                       for tag in sorted({ALL, *tags})}}


@checks_bp.get("/status/")
def status():
    """Answers OK when the database answers a query (no key needed)."""
    db.session.execute(text("SELECT 1"))
    return Response("OK", mimetype="text/plain")
