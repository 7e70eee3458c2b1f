"""One application, two views: how an application reads as a Healthchecks check, and how a
check's fields (its API's, or an import's) become an application's. Nothing is stored twice.

| check | application |
|---|---|
| uuid, name, slug, desc, tags ("a b") | uuid, name, slug, description, tags (["a", "b"]) |
| timeout, or schedule + tz | period_seconds, or cron + timezone |
| grace, manual_resume, methods | grace_seconds, manual_resume, methods |
| status new/up/grace/down/paused | status by the clock (late is grace) |
| last_ping, next_ping | last_heartbeat_at, the deadline (or a run's start) |
| n_pings, last_duration | n_pings, the duration of the latest run's end |
| channels ("uuid,uuid") | channels (each channel's uuid) |
| flips | incidents: down when one opened, up when it resolved |
| pings (n, type, date, …) | heartbeats, newest first; n counts back from n_pings |
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
import unicodedata
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import lazyload

import applications
from badges import check_badge_url
from channels import list_channels
from database import db
from exceptions import NotFound, ValidationFailed
from healthchecks_schemas import KEYWORD_FIELDS
from models import Application, ApplicationTag, Channel, Heartbeat, Incident
from status_rules import status_by_time

STATUSES = {"late": "grace"}
CHANNEL_KINDS = {"pagerduty": "pd"}
PING_TYPES = {"ok": "success"}
RUN_END_KINDS = ("ok", "fail")
PING_LOG_LIMIT = 100


@dataclasses.dataclass(frozen=True)
class View:
    """What a check's shape depends on besides its application."""

    version: int  # of the API: 1, 2 or 3
    read_only: bool  # the key's: no UUID, URLs or channels, a unique_key instead
    now: dt.datetime
    site_root: str
    badge_key: str


def isostring(value: dt.datetime | None) -> str | None:
    """Healthchecks' timestamps: ISO 8601 in UTC, whole seconds."""
    return value.replace(microsecond=0).isoformat() if value else None


def check_status(application: Application, now: dt.datetime, version: int) -> str:
    """new, up, grace, down or paused by the clock now; API v1 says `started` during a run."""
    status, _ = status_by_time(application, now)
    if version == 1 and application.last_start_at is not None and status != "down":
        return "started"
    return STATUSES.get(status, status)


def next_ping(application: Application) -> dt.datetime | None:
    """When the grace period starts: the deadline, or a run's start if that is earlier."""
    candidates = []
    if application.status in ("up", "late") and application.next_deadline_at is not None:
        candidates.append(application.next_deadline_at)
    if application.status != "down" and application.last_start_at is not None:
        candidates.append(application.last_start_at)
    return min(candidates, default=None)


def check_view(application: Application, view: View,
               last_duration_ms: int | None = None) -> dict[str, Any]:
    """The check, with Healthchecks' keys in its order."""
    check: dict[str, Any] = {
        "name": application.name, "slug": application.slug or "",
        "tags": " ".join(application.tags), "desc": application.description,
        "grace": application.grace_seconds, "n_pings": application.n_pings,
        "status": check_status(application, view.now, view.version),
        "started": application.last_start_at is not None,
        "last_ping": isostring(application.last_heartbeat_at),
        "next_ping": isostring(next_ping(application)),
        "manual_resume": application.manual_resume, "methods": application.methods,
        **KEYWORD_FIELDS,
        "badge_url": check_badge_url(view.site_root, view.badge_key, application),
    }
    if last_duration_ms:
        check["last_duration"] = last_duration_ms // 1000
    if view.read_only:
        check["unique_key"] = applications.unique_key(application.uuid)
    else:
        update_url = f"{view.site_root}/api/v{view.version}/checks/{application.uuid}"
        check.update(uuid=application.uuid, ping_url=f"{view.site_root}/ping/{application.uuid}",
                     update_url=update_url, pause_url=f"{update_url}/pause",
                     resume_url=f"{update_url}/resume",
                     channels=",".join(sorted(channel.uuid for channel in application.channels)))
    if application.cron:
        check.update(schedule=application.cron, tz=application.timezone)
    else:
        check["timeout"] = application.period_seconds
    return check


def integration_view(channel: Channel) -> dict[str, str]:
    return {"id": channel.uuid, "name": channel.name,
            "kind": CHANNEL_KINDS.get(channel.kind, channel.kind)}


# --- A check's fields as an application's ----------------------------------------------------

def slugify(name: str) -> str:
    """The slug API v1 and v2 derive from a name: ASCII, lower case, words joined by `-`."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text.lower())
    return re.sub(r"[-\s]+", "-", text).strip("-_")[:100]


def application_fields(spec: dict[str, Any], version: int,
                       application_id: int | None) -> dict[str, Any]:
    """The application's fields for a validated check spec (every field optional).

    API v1 and v2 derive the slug from the name; as slugs are unique here, a derived slug
    another application holds is not taken (the slug stays as it was).
    """
    fields: dict[str, Any] = {}
    if "name" in spec:
        fields["name"] = spec["name"]
        if version < 3:
            derived = slugify(spec["name"]) or None
            if derived is None or not applications.slug_taken(derived, application_id):
                fields["slug"] = derived
    if "slug" in spec:
        fields["slug"] = spec["slug"] or None
    if "tags" in spec:
        fields["tags"] = list(dict.fromkeys(spec["tags"].split()))
    if "desc" in spec:
        fields["description"] = spec["desc"]
    if spec.get("schedule"):
        fields["cron"] = spec["schedule"]
    elif "timeout" in spec:
        fields["period_seconds"] = spec["timeout"]
    for ours, theirs in (("timezone", "tz"), ("grace_seconds", "grace"),
                         ("manual_resume", "manual_resume"), ("methods", "methods")):
        if theirs in spec:
            fields[ours] = spec[theirs]
    if "channels" in spec:
        fields["channels"] = channel_ids(spec["channels"])
    return fields


def channel_ids(text: str) -> list[int]:
    """`*` (every channel), `` (none) or channel UUIDs or names, comma-separated."""
    if text == "":
        return []
    available = list_channels()
    if text == "*":
        return [channel.id for channel in available]
    chosen = []
    for identifier in text.split(","):
        if not identifier:
            raise ValidationFailed({"channels": ["empty channel identifier"]})
        matches = [channel for channel in available
                   if identifier in (channel.uuid, channel.name)]
        if len(matches) != 1:
            problem = "invalid" if not matches else "non-unique"
            raise ValidationFailed({"channels": [f"{problem} channel identifier: {identifier}"]})
        chosen.append(matches[0].id)
    return list(dict.fromkeys(chosen))


def unique_match(spec: dict[str, Any]) -> Application | None:
    """For `unique`: the first application whose listed fields all equal the spec's (tags as a
    set); None when `unique` is empty or names a field the spec does not give."""
    unique = spec.get("unique") or []
    if not unique or any(name not in spec for name in unique):
        return None
    query = select(Application).order_by(Application.id)
    if "name" in unique:
        query = query.where(Application.name == spec["name"])
    if "slug" in unique:
        query = query.where(Application.slug == spec["slug"] if spec["slug"]
                            else Application.slug.is_(None))
    if "timeout" in unique:
        query = query.where(Application.period_seconds == spec["timeout"])
    if "grace" in unique:
        query = query.where(Application.grace_seconds == spec["grace"])
    wanted_tags = set(spec["tags"].split()) if "tags" in unique else None
    for application in db.session.execute(query).scalars():
        if wanted_tags is None or set(application.tags) == wanted_tags:
            return application
    return None


# --- Reading checks, pings and flips ------------------------------------------------------

def _last_run_duration(application_id) -> Select:
    """The duration of the latest end of a run (success or failure), if it had one."""
    return (select(Heartbeat.duration_ms)
            .where(Heartbeat.application_id == application_id,
                   Heartbeat.kind.in_(RUN_END_KINDS))
            .order_by(Heartbeat.received_at.desc(), Heartbeat.id.desc()).limit(1))


def find_checks(tags: list[str], slug: str | None,
                with_channels: bool) -> list[tuple[Application, int | None]]:
    """Applications with every tag given (and the slug), with their last run's duration."""
    query = (select(Application, _last_run_duration(Application.id).scalar_subquery())
             .order_by(Application.id))
    for tag in set(tags):
        query = query.where(Application.id.in_(
            select(ApplicationTag.application_id).where(ApplicationTag.tag == tag)))
    if slug:
        query = query.where(Application.slug == slug)
    if not with_channels:
        query = query.options(lazyload(Application.channels))
    return [(application, duration) for application, duration in db.session.execute(query)]


def last_run_duration_ms(application: Application) -> int | None:
    return db.session.execute(_last_run_duration(application.id)).scalar()


def _ping_log_query(application: Application, *columns) -> Select:
    # n_pings is read in the same statement as the heartbeats, so both are one snapshot.
    return (select(Application.n_pings, *columns)
            .join(Application, Application.id == Heartbeat.application_id)
            .where(Heartbeat.application_id == application.id)
            .order_by(Heartbeat.received_at.desc(), Heartbeat.id.desc()).limit(PING_LOG_LIMIT))


def ping_log(application: Application, view: View) -> list[dict[str, Any]]:
    """The latest pings, newest first, numbered as Healthchecks numbers them (1 = the first)."""
    rows = db.session.execute(_ping_log_query(
        application, Heartbeat.kind, Heartbeat.received_at, Heartbeat.remote_addr,
        Heartbeat.method, Heartbeat.source, Heartbeat.user_agent, Heartbeat.rid,
        Heartbeat.duration_ms, (func.length(Heartbeat.message) > 0).label("has_body")))
    pings = []
    for index, row in enumerate(rows):
        n = row.n_pings - index
        body_url = (f"{view.site_root}/api/v{view.version}/checks/{application.uuid}/pings/"
                    f"{n}/body") if row.has_body else None
        ping = {"type": PING_TYPES.get(row.kind, row.kind), "date": row.received_at.isoformat(),
                "n": n, "scheme": "http", "remote_addr": row.remote_addr,
                "method": row.method or ("POST" if row.source == "api" else ""),
                "ua": row.user_agent or "", "rid": row.rid, "body_url": body_url}
        if row.duration_ms is not None:
            ping["duration"] = round(row.duration_ms / 1000, 2)
        pings.append(ping)
    return pings


def ping_body(application: Application, n: int) -> str:
    """The body of ping number `n`, if it is among the latest and has one."""
    for index, (n_pings, heartbeat_id, received_at) in enumerate(db.session.execute(
            _ping_log_query(application, Heartbeat.id, Heartbeat.received_at))):
        if n_pings - index == n:
            # With its time, PostgreSQL looks in that day's partition only.
            body = db.session.execute(select(Heartbeat.message).where(
                Heartbeat.id == heartbeat_id, Heartbeat.received_at == received_at)).scalar()
            if body:
                return body
            break
    raise NotFound(f"Ping {n} has no body, or is not among the latest {PING_LOG_LIMIT}.")


def flips(application: Application, since: dt.datetime | None,
          until: dt.datetime | None) -> list[dict[str, Any]]:
    """Its changes between up and down, newest first: its incidents' openings and ends."""
    query = select(Incident.started_at, Incident.resolved_at).where(
        Incident.application_id == application.id)
    if since is not None:
        query = query.where(or_(Incident.started_at >= since, Incident.resolved_at >= since))
    if until is not None:
        query = query.where(Incident.started_at < until)
    changes = []
    for started_at, resolved_at in db.session.execute(query):
        changes.append((started_at, 0))
        if resolved_at is not None:
            changes.append((resolved_at, 1))
    changes = [(at, up) for at, up in changes
               if (since is None or at >= since) and (until is None or at < until)]
    changes.sort(key=lambda change: change[0], reverse=True)
    return [{"timestamp": isostring(at), "up": up} for at, up in changes]
