"""Managing applications: create, change, list, pause, resume, delete."""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from channels import channels_by_ids, list_channels
from database import db
from dependencies import set_depends_on, wake_suppressed
from exceptions import ApplicationNotFound, Conflict, ValidationFailed
from incidents import open_incident_of, resolve_incident
from ingest.signals import heartbeat_view
from models import Application, ApplicationTag, Channel, Heartbeat, Incident
from schedule import next_deadline
from status_rules import next_check_at
from utils.pagination import paginate
from utils.request_input import canonical_uuid

UNIQUE_KEY_PATTERN = re.compile(r"[0-9a-f]{40}")
_SCHEDULE_FIELDS = {"period_seconds", "cron", "timezone", "grace_seconds"}
# Changing these may change what an open incident is owed: the monitor looks at it again.
_INCIDENT_FIELDS = {"tags", "depends_on", "reminder_interval_seconds", "escalation"}
DEFAULTS = {"description": "", "period_seconds": 86400, "timezone": "UTC", "grace_seconds": 3600,
            "failure_threshold": 1, "tags": []}


def get_application(uuid: str, *, for_update: bool = False) -> Application:
    query = select(Application).where(Application.uuid == uuid)
    if for_update:
        query = query.with_for_update()
    application = db.session.execute(query).scalar_one_or_none()
    if application is None:
        raise ApplicationNotFound(uuid)
    return application


def find_application(identifier: str) -> Application | None:
    """The application a badge URL names: by UUID, slug or unique key."""
    uuid = canonical_uuid(identifier)
    application = None
    if uuid is not None:
        application = db.session.execute(
            select(Application).where(Application.uuid == uuid)).scalar_one_or_none()
    if application is None:
        application = application_by_slug(identifier)
    if application is None and UNIQUE_KEY_PATTERN.fullmatch(identifier):
        application = application_by_unique_key(identifier)
    return application


def unique_key(uuid: str) -> str:
    """Healthchecks' `unique_key`: names an application to read-only keys and in badge URLs
    without revealing its UUID (the secret of its ping URL)."""
    return hashlib.sha1(uuid.replace("-", "")[:16].encode()).hexdigest()


def application_by_unique_key(key: str) -> Application | None:
    """The application whose unique_key is `key` (a scan of the UUIDs: nothing indexes it)."""
    for application_id, uuid in db.session.execute(select(Application.id, Application.uuid)):
        if unique_key(uuid) == key:
            return db.session.get(Application, application_id)
    return None


def application_by_slug(slug: str) -> Application | None:
    return db.session.execute(
        select(Application).where(Application.slug == slug)).scalar_one_or_none()


def slug_taken(slug: str, application_id: int | None) -> bool:
    """True if another application than `application_id` has this slug."""
    query = select(Application.id).where(Application.slug == slug)
    if application_id is not None:
        query = query.where(Application.id != application_id)
    return db.session.execute(query.limit(1)).first() is not None


def create_application(fields: dict[str, Any], now: dt.datetime) -> Application:
    """Create an application; a client-chosen UUID must be unused."""
    fields = dict(fields)
    if fields.get("uuid") is not None:
        fields["uuid"] = str(fields["uuid"])
        if db.session.execute(select(Application.id).where(
                Application.uuid == fields["uuid"])).first():
            raise Conflict(f"An application with UUID {fields['uuid']} already exists.")
    application = Application(created_at=now, updated_at=now, status="new",
                              consecutive_failures=0, reminder_interval_seconds=0)
    _assign(application, {**DEFAULTS, **fields}, now)
    db.session.add(application)
    db.session.commit()
    return application


def create_for_slug_ping(fields: dict[str, Any], now: dt.datetime) -> Application:
    """The application a slug ping with `?create=1` creates as Healthchecks does: a day's
    period, an hour's grace (the defaults), every channel; the one a concurrent ping created,
    if that ping won the race for the slug."""
    fields = {**fields, "channels": [channel.id for channel in list_channels()]}
    try:
        return create_application(fields, now)
    except (Conflict, IntegrityError):
        db.session.rollback()
        return db.session.execute(
            select(Application).where(Application.slug == fields["slug"])).scalar_one()


def update_application(uuid: str, fields: dict[str, Any], now: dt.datetime) -> Application:
    if "uuid" in fields:
        raise ValidationFailed({"uuid": ["The UUID of an application cannot be changed."]})
    application = get_application(uuid, for_update=True)
    _assign(application, fields, now)
    application.updated_at = now
    incident = open_incident_of(application) if _INCIDENT_FIELDS & fields.keys() else None
    if incident is not None and incident.resolved_at is None:
        incident.next_reminder_at = None  # planned again from the new interval
        incident.next_check_at = now
    db.session.commit()
    return application


def _assign(application: Application, fields: dict[str, Any], now: dt.datetime) -> None:
    fields = dict(fields)
    if fields.get("slug") and slug_taken(fields["slug"], application.id):
        raise Conflict(f"Another application has the slug {fields['slug']!r}.")
    if fields.get("cron"):
        fields["period_seconds"] = None
    elif fields.get("period_seconds"):
        fields["cron"] = None
    channel_ids = fields.pop("channels", None)
    has_parent, parent_uuid = "depends_on" in fields, fields.pop("depends_on", None)
    if fields.get("escalation"):
        for index, step in enumerate(fields["escalation"]):
            _check_channels(step["channels"], f"escalation.{index}.channels")
    for name, value in fields.items():
        setattr(application, name, value)
    if channel_ids is not None:
        set_channels(application, channel_ids)
    if has_parent:  # a new application (no id yet) cannot close a cycle
        set_depends_on(application, parent_uuid)
    minimum, maximum = application.min_duration_seconds, application.max_duration_seconds
    if minimum is not None and maximum is not None and minimum > maximum:
        raise ValidationFailed({"min_duration_seconds": [
            f"Must not be above max_duration_seconds ({maximum})."]})
    if application.period_seconds is None and not application.cron:
        application.period_seconds = 86400
    if _SCHEDULE_FIELDS & fields.keys() and application.last_heartbeat_at is not None \
            and application.status not in ("paused", "new"):
        application.next_deadline_at = next_deadline(
            application.period_seconds, application.cron, application.timezone,
            application.last_heartbeat_at)
    application.next_check_at = next_check_at(application)


def set_channels(application: Application, channel_ids: list[int]) -> None:
    application.channels = channels_by_ids(channel_ids)


def _check_channels(channel_ids: list[int], field: str) -> None:
    """422 naming `field` if any of the channel ids is unknown."""
    found = set(db.session.execute(select(Channel.id).where(Channel.id.in_(channel_ids))).scalars())
    missing = [channel_id for channel_id in dict.fromkeys(channel_ids) if channel_id not in found]
    if missing:
        raise ValidationFailed({field: [f"Unknown channel ids: {missing}"]})


def list_applications(status: str | None, tag: str | None, limit: int,
                      cursor: str | None, name_contains: str | None = None,
                      ) -> tuple[list[Application], str | None]:
    """Applications in the order they were created; `name_contains` searches names (any case)."""
    query = select(Application)
    if status:
        query = query.where(Application.status == status)
    if tag:
        query = query.where(Application.id.in_(
            select(ApplicationTag.application_id).where(ApplicationTag.tag == tag)))
    if name_contains:
        query = query.where(func.lower(Application.name).contains(name_contains.lower(),
                                                                  autoescape=True))
    return paginate(query, [Application.id], limit, cursor, scope="applications",
                    descending=False)


def list_heartbeats(uuid: str, limit: int,
                    cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """An application's heartbeats, newest first."""
    application = get_application(uuid)
    query = select(Heartbeat).where(Heartbeat.application_id == application.id)
    rows, next_cursor = paginate(query, [Heartbeat.received_at, Heartbeat.id], limit, cursor,
                                 scope="heartbeats")
    return [heartbeat_view(application.uuid, row) for row in rows], next_cursor


def status_counts() -> dict[str, int]:
    """How many applications are in each status (one indexed GROUP BY)."""
    return dict(db.session.execute(
        select(Application.status, func.count()).group_by(Application.status)).all())


def known_tags() -> list[str]:
    """Every tag in use, sorted."""
    return list(db.session.execute(
        select(ApplicationTag.tag).distinct().order_by(ApplicationTag.tag)).scalars())


def pause_application(uuid: str, now: dt.datetime) -> Application:
    """Stop watching. An open incident is resolved now (resolution `paused`), with the
    recovery alert to the channels told of it: a paused application is down no more."""
    application = get_application(uuid, for_update=True)
    resolve_incident(application, now, "paused")
    application.status = "paused"
    application.last_start_at = None
    application.next_check_at = None
    application.consecutive_failures = 0
    application.updated_at = now
    db.session.commit()
    return application


def resume_application(uuid: str, now: dt.datetime) -> Application:
    """Resume watching: the application waits for its next heartbeat, like a new one."""
    application = get_application(uuid, for_update=True)
    if application.status == "paused":
        application.status = "new"
        application.next_deadline_at = None
        application.next_check_at = None
        application.updated_at = now
        db.session.commit()
    return application


def delete_application(uuid: str, now: dt.datetime) -> None:
    application = get_application(uuid, for_update=True)
    wake_suppressed(application.uuid, now)
    db.session.delete(application)
    db.session.commit()


def list_incidents(uuid: str, limit: int, cursor: str | None) -> tuple[list[Incident], str | None]:
    """An application's incidents, newest first."""
    application = get_application(uuid)
    query = select(Incident).where(Incident.application_id == application.id)
    return paginate(query, [Incident.id], limit, cursor, scope="incidents")
