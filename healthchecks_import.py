"""Importing a Healthchecks instance (`flask import-healthchecks`): each of its checks becomes an
application here with the same UUID, so its ping URLs keep working once its hostname points here.

Its v3 API is read first (GET /api/v3/checks/ and /api/v3/channels/, neither paginated); a
wrong key, an unreachable URL or an answer that is not Healthchecks' ends the import there,
with one line and nothing changed. Each check then goes through the same validation and the
same mapping as a check created through our Healthchecks API (healthchecks_mapping.py): name,
slug, tags, description, timeout or schedule + tz, grace, manual_resume, methods, and its
paused state. A rerun updates what changed and never duplicates. Healthchecks' API does not give
a channel's settings: its channels are listed by name and kind to be recreated here, and a
check is attached to each channel here that has one of its channels' names (channels are added,
never removed, so a later run attaches the recreated ones).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter
from typing import Any

import urllib3
from marshmallow import ValidationError
from sqlalchemy import select

import applications
from database import db
from error_handlers import field_messages
from healthchecks_mapping import application_fields
from healthchecks_schemas import KEYWORD_FIELDS, CheckSpecSchema
from models import Application, Channel
from utils.request_input import canonical_uuid

TIMEOUT_SECONDS = 15
CARRIED_FIELDS = ("name", "slug", "tags", "desc", "grace", "manual_resume", "methods")


class ImportFailed(Exception):
    """The source could not be read as a Healthchecks instance; nothing was changed."""


@dataclasses.dataclass
class Source:
    url: str
    checks: list[dict[str, Any]]
    channels: list[dict[str, Any]]


@dataclasses.dataclass
class PlannedCheck:
    uuid: str
    name: str
    action: str  # create | update | unchanged | skip
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    paused: bool = False
    changed: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Plan:
    checks: list[PlannedCheck]
    missing_channels: dict[tuple[str, str], int]  # (kind, name) -> checks using it

    def summary(self, dry_run: bool) -> str:
        counts = Counter(check.action for check in self.checks)
        text = (f"{len(self.checks)} checks: {counts['create']} created, {counts['update']} "
                f"updated, {counts['unchanged']} unchanged, {counts['skip']} skipped; "
                f"{len(self.missing_channels)} channels to recreate.")
        return text + (" Dry run: nothing was changed." if dry_run else "")

    def lines(self, dry_run: bool) -> list[str]:
        lines = []
        for check in self.checks:
            detail = f" ({', '.join(check.changed)})" if check.changed else ""
            lines.append(f"{check.action:<9} {check.uuid}  {check.name!r}{detail}")
            lines.extend(f"          note: {note}" for note in check.notes)
        if self.missing_channels:
            lines.append("Channels to recreate here (Healthchecks' API does not give their "
                         "settings); a check is attached to a channel here with the same name "
                         "when the import runs again:")
            for (kind, name), used_by in sorted(self.missing_channels.items()):
                lines.append(f"  {kind:<10} {name!r} (used by {used_by} checks)")
        lines.append(self.summary(dry_run))
        return lines


# --- Reading the source --------------------------------------------------------------------

def source_root(url: str) -> str:
    root = url.strip().rstrip("/")
    if root.endswith("/api/v3"):
        root = root[:-len("/api/v3")]
    if not root.lower().startswith(("http://", "https://")):
        raise ImportFailed(f"--url must start with http:// or https:// (got {url!r}).")
    return root


def fetch_source(url: str, api_key: str) -> Source:
    """Read every check and channel, or raise ImportFailed saying why not."""
    root = source_root(url)
    http = urllib3.PoolManager(timeout=TIMEOUT_SECONDS, retries=False)
    checks = _listing(http, root, "checks", api_key)
    if checks and all("uuid" not in check and "unique_key" in check for check in checks):
        raise ImportFailed(f"{root} gave no check UUIDs: the API key is read-only. "
                           "The import needs a read-write key.")
    for check in checks:
        if not isinstance(check.get("uuid"), str) or not isinstance(check.get("name"), str):
            raise ImportFailed(f"{root}/api/v3/checks/ did not answer like Healthchecks: a "
                               "check without a UUID or a name.")
    return Source(root, checks, _listing(http, root, "channels", api_key))


def _listing(http: urllib3.PoolManager, root: str, name: str,
             api_key: str) -> list[dict[str, Any]]:
    url = f"{root}/api/v3/{name}/"
    try:
        response = http.request("GET", url, headers={"X-Api-Key": api_key,
                                                     "Accept": "application/json"})
    except urllib3.exceptions.HTTPError as error:
        reason = getattr(error, "reason", None) or error
        raise ImportFailed(f"Could not reach {url}: {reason}")
    if response.status in (401, 403):
        raise ImportFailed(f"{root} refused the API key (HTTP {response.status}). Use a "
                           "read-write API key of the project (Project Settings → API Access).")
    if response.status != 200:
        raise ImportFailed(f"{url} answered HTTP {response.status}: not a Healthchecks v3 API.")
    try:
        document = json.loads(response.data)
    except ValueError:
        document = None
    items = document.get(name) if isinstance(document, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ImportFailed(f"{url} did not answer like Healthchecks (no '{name}' list in JSON).")
    return items


# --- Planning and applying -----------------------------------------------------------------

def plan_import(source: Source) -> Plan:
    """What the import would do, validated check by check; writes nothing."""
    names = {channel.get("id"): (str(channel.get("kind", "")), str(channel.get("name", "")))
             for channel in source.channels}
    ours = _channels_by_name()
    existing = {application.uuid: application for application in db.session.execute(
        select(Application).where(Application.uuid.in_(
            [check["uuid"] for check in source.checks]))).scalars()}
    slugs_given: set[str] = set()
    missing: Counter[tuple[str, str]] = Counter()
    planned = []
    for check in source.checks:
        application = existing.get(canonical_uuid(check["uuid"]) or "")
        item = _plan_check(check, application, slugs_given)
        if item.action != "skip":
            wanted = [names.get(code, ("?", code)) for code in
                      str(check.get("channels", "")).split(",") if code]
            found = [ours[name] for _, name in wanted if name in ours]
            missing.update(channel for channel in wanted if channel[1] not in ours)
            _attach_channels(item, application, found)
        planned.append(item)
    return Plan(planned, dict(missing))


def _plan_check(check: dict[str, Any], application: Application | None,
                slugs_given: set[str]) -> PlannedCheck:
    uuid = canonical_uuid(check["uuid"])
    item = PlannedCheck(uuid or check["uuid"], check["name"], "create")
    if uuid is None:
        item.action = "skip"
        item.notes.append("not a UUID")
        return item
    spec = {name: check[name] for name in CARRIED_FIELDS if name in check}
    if check.get("schedule"):
        spec.update(schedule=check["schedule"], tz=check.get("tz") or "UTC")
    elif "timeout" in check:
        spec["timeout"] = check["timeout"]
    slug = spec.get("slug") or ""
    if slug and (slug in slugs_given or applications.slug_taken(
            slug, application.id if application else None)):
        item.notes.append(f"slug {slug!r} is taken here by another check; imported without it")
        spec["slug"] = ""
    try:
        spec = CheckSpecSchema().load(spec)
    except ValidationError as error:
        item.action = "skip"
        item.notes.extend(f"{field}: {' '.join(messages)}" for field, messages in
                          field_messages(error.normalized_messages()).items())
        return item
    if spec.get("slug"):
        slugs_given.add(spec["slug"])
    if any(check.get(name, default) != default for name, default in KEYWORD_FIELDS.items()):
        item.notes.append("keyword filters not carried over (not offered here)")
    item.fields = application_fields(spec, 3, application.id if application else None)
    item.paused = check.get("status") == "paused"
    if application is not None:
        item.changed = _changed_fields(application, item.fields, item.paused)
        item.action = "update" if item.changed else "unchanged"
    return item


def _attach_channels(item: PlannedCheck, application: Application | None,
                     channels: list[Channel]) -> None:
    current = {channel.id for channel in application.channels} if application else set()
    wanted = current | {channel.id for channel in channels}
    if wanted != current:
        item.fields["channels"] = sorted(wanted)
        if item.action == "unchanged":
            item.action = "update"
        if application is not None:
            item.changed.append("channels")


def _channels_by_name() -> dict[str, Channel]:
    """Our channels by name, for names only one channel has."""
    by_name: dict[str, list[Channel]] = {}
    for channel in db.session.execute(select(Channel)).scalars():
        by_name.setdefault(channel.name, []).append(channel)
    return {name: found[0] for name, found in by_name.items() if len(found) == 1}


def _changed_fields(application: Application, fields: dict[str, Any], paused: bool) -> list[str]:
    changed = [name for name, value in fields.items() if name != "channels"
               and (set(value) != set(application.tags) if name == "tags"
                    else getattr(application, name) != value)]
    if paused != (application.status == "paused"):
        changed.append("paused" if paused else "resumed")
    return changed


def apply_plan(plan: Plan, now: dt.datetime) -> None:
    """Create or update each planned application, and pause or resume it as the source."""
    for item in plan.checks:
        if item.action == "create":
            application = applications.create_application(
                {"name": "", **item.fields, "uuid": item.uuid}, now)
        elif item.action == "update":
            application = applications.update_application(item.uuid, item.fields, now)
        else:
            continue
        if item.paused and application.status != "paused":
            applications.pause_application(item.uuid, now)
        elif not item.paused and application.status == "paused":
            applications.resume_application(item.uuid, now)
