"""Maintenance windows and snoozes (SPEC §8): times when alerts about some applications are held.

A window is one-off (`starts_at`, `ends_at`), recurring (`cron` in `timezone`, lasting
`duration_seconds` from each fire) or a snooze (a one-off for one application, from now). It
covers its applications and the applications with one of its tags; with neither, all of them.

Each window keeps its occurrence in force, or its next one, in two columns, so "which windows
are active now" is one indexed comparison; a recurring window's occurrence is moved on by the
monitor once it has ended (`refresh_occurrences`), and computed on the spot until then.
What a window does to incidents and alerts is decided in incidents.py and incident_timers.py.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Protocol

from flask import g, has_request_context
from sqlalchemy import and_, or_, select, update

from database import db
from exceptions import NotFound, ValidationFailed
from models import Application, Incident, MaintenanceWindow, maintenance_window_applications
from schedule import next_cron_fire
from utils.pagination import paginate

SECOND = dt.timedelta(seconds=1)


class MaintenanceWindowNotFound(NotFound):
    message = "Maintenance window not found"

    def __init__(self, window_id: Any):
        super().__init__(f"No maintenance window found with id: {window_id}")


class Covered(Protocol):
    """What coverage reads of an application."""

    id: int
    tags: list[str]


@dataclasses.dataclass(frozen=True)
class ActiveWindow:
    """A window in force at some moment: its occurrence and its scope."""

    id: int
    kind: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    covers_all: bool
    tags: frozenset[str]
    application_ids: frozenset[int]


class WindowsInForce:
    """The windows in force at one moment, indexed by what they cover: finding those that
    cover an application costs its own windows and tags, not the number of windows."""

    def __init__(self, windows: list[ActiveWindow]):
        self.windows = windows
        self._for_all = [window for window in windows if window.covers_all]
        self._by_application: dict[int, list[ActiveWindow]] = {}
        self._by_tag: dict[str, list[ActiveWindow]] = {}
        for window in windows:
            for application_id in window.application_ids:
                self._by_application.setdefault(application_id, []).append(window)
            for tag in window.tags:
                self._by_tag.setdefault(tag, []).append(window)

    def covering(self, application: Covered) -> list[ActiveWindow]:
        """The windows that cover `application`."""
        found = self._for_all + self._by_application.get(application.id, [])
        for tag in application.tags:
            found += self._by_tag.get(tag, [])
        return list({window.id: window for window in found}.values())

    def snoozed_until(self, application: Covered) -> dt.datetime | None:
        """The end of the application's snooze in force, if any."""
        ends = [window.ends_at for window in self._by_application.get(application.id, [])
                if window.kind == "snooze"]
        return max(ends) if ends else None


def recurring_occurrence(cron: str, timezone: str, duration_seconds: int, now: dt.datetime,
                         skip_until: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """The occurrence of a recurring window in force at `now`, else the next one.

    The one in force starts at the latest fire at or before `now` whose duration has not run
    out (fires before `skip_until` do not count). The latest fire is found by bisection on
    next_cron_fire, so a long window of a frequent cron costs a few dozen evaluations.
    """
    duration = dt.timedelta(seconds=duration_seconds)
    earliest = now - duration
    if skip_until is not None and skip_until - SECOND > earliest:
        earliest = skip_until - SECOND
    first = next_cron_fire(cron, timezone, earliest)
    if first > now:
        return first, first + duration
    low, high = first, now  # next fire after `low` is at or before now; after `high`, not
    if next_cron_fire(cron, timezone, low) > now:
        return first, first + duration
    while high - low > SECOND:
        middle = low + (high - low) / 2
        if next_cron_fire(cron, timezone, middle) <= now:
            low = middle
        else:
            high = middle
    latest = next_cron_fire(cron, timezone, low)
    return latest, latest + duration


def window_occurrence(window: MaintenanceWindow,
                      now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """The occurrence in force at `now` or the next one; None for a one-off that has ended."""
    if window.cron:
        return recurring_occurrence(window.cron, window.timezone, window.duration_seconds, now,
                                    window.skip_until)
    if window.ends_at is None or window.ends_at <= now:
        return None
    return window.starts_at, window.ends_at


def _set_occurrence(window: MaintenanceWindow, now: dt.datetime) -> None:
    occurrence = window_occurrence(window, now)
    window.occurrence_starts_at, window.occurrence_ends_at = occurrence or (None, None)


def refresh_occurrences(now: dt.datetime) -> int:
    """Move on the occurrences that have ended (a monitor task; one indexed query when idle)."""
    stale = list(db.session.execute(
        select(MaintenanceWindow).where(MaintenanceWindow.occurrence_ends_at <= now)
        .order_by(MaintenanceWindow.id).with_for_update(skip_locked=True)).scalars())
    for window in stale:
        _set_occurrence(window, now)
    db.session.commit()
    return len(stale)


def active_windows(now: dt.datetime) -> WindowsInForce:
    """Every window in force at `now`, with its scope."""
    rows = list(db.session.execute(select(MaintenanceWindow).where(or_(
        and_(MaintenanceWindow.occurrence_starts_at <= now,
             MaintenanceWindow.occurrence_ends_at > now),
        and_(MaintenanceWindow.cron.is_not(None),
             MaintenanceWindow.occurrence_ends_at <= now)))).scalars())
    in_force = []
    for window in rows:
        starts_at, ends_at = window.occurrence_starts_at, window.occurrence_ends_at
        if ends_at <= now:  # a recurring one the monitor has not moved on yet
            starts_at, ends_at = window_occurrence(window, now)
        if starts_at <= now < ends_at:
            in_force.append((window, starts_at, ends_at))
    scoped: dict[int, set[int]] = {window.id: set() for window, _, _ in in_force}
    if scoped:
        for window_id, application_id in db.session.execute(
                select(maintenance_window_applications.c.window_id,
                       maintenance_window_applications.c.application_id)
                .where(maintenance_window_applications.c.window_id.in_(list(scoped)))):
            scoped[window_id].add(application_id)
    return WindowsInForce([
        ActiveWindow(window.id, window.kind, starts_at, ends_at, window.covers_all,
                     frozenset(window.tags or ()), frozenset(scoped[window.id]))
        for window, starts_at, ends_at in in_force])


def occurrence_now(window: MaintenanceWindow,
                   now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """The window's occurrence in force or next, as of `now` (even if not yet moved on)."""
    if window.occurrence_ends_at is not None and window.occurrence_ends_at > now:
        return window.occurrence_starts_at, window.occurrence_ends_at
    return window_occurrence(window, now)


def request_windows(now: dt.datetime) -> WindowsInForce:
    """active_windows(now), read once per request (a page of applications asks for each)."""
    if not has_request_context():
        return active_windows(now)
    if "active_windows" not in g:
        g.active_windows = active_windows(now)
    return g.active_windows


def hold_ends_at(windows: list[ActiveWindow]) -> dt.datetime:
    """When covering windows may stop holding: the first of their ends (then look again)."""
    return min(window.ends_at for window in windows)


def wake_open_incidents(now: dt.datetime) -> None:
    """After windows change, the monitor looks again at every open incident it will look at
    later (held alerts, reminders, escalation steps): a hold may have ended."""
    db.session.execute(update(Incident).where(Incident.resolved_at.is_(None),
                                              Incident.next_check_at > now)
                       .values(next_check_at=now))


# --- The maintenance-windows API ------------------------------------------------------------

def get_window(window_id: int) -> MaintenanceWindow:
    window = db.session.get(MaintenanceWindow, window_id)
    if window is None:
        raise MaintenanceWindowNotFound(window_id)
    return window


def list_windows(active: bool | None, now: dt.datetime, limit: int,
                 cursor: str | None) -> tuple[list[MaintenanceWindow], str | None]:
    """Windows, newest first; `active` keeps those in force now (or, false, the others)."""
    query = select(MaintenanceWindow)
    if active is not None:
        ids = [window.id for window in active_windows(now).windows]
        condition = MaintenanceWindow.id.in_(ids)
        query = query.where(condition if active else ~condition)
    return paginate(query, [MaintenanceWindow.id], limit, cursor, scope="maintenance-windows")


def create_window(fields: dict[str, Any], now: dt.datetime) -> MaintenanceWindow:
    window = MaintenanceWindow(created_at=now, updated_at=now, timezone="UTC", tags=[])
    _assign(window, {"applications": [], "tags": [], **fields}, now)
    db.session.add(window)
    wake_open_incidents(now)
    db.session.commit()
    return window


def update_window(window_id: int, fields: dict[str, Any], now: dt.datetime) -> MaintenanceWindow:
    window = get_window(window_id)
    if window.kind == "snooze" and fields.keys() & {"cron", "duration_seconds", "applications",
                                                    "tags"}:
        raise ValidationFailed({"kind": ["A snooze covers its application until its end; "
                                         "change ends_at, or snooze again."]})
    _assign(window, fields, now)
    window.updated_at = now
    wake_open_incidents(now)
    db.session.commit()
    return window


def delete_window(window_id: int, now: dt.datetime) -> None:
    db.session.delete(get_window(window_id))
    wake_open_incidents(now)
    db.session.commit()


def end_window(window_id: int, now: dt.datetime) -> MaintenanceWindow:
    """End the occurrence in force now (a one-off ends for good; a recurring one goes on with
    its next fire)."""
    window = get_window(window_id)
    if window.cron:
        window.skip_until = now + SECOND
    elif window.ends_at is None or window.ends_at > now:
        window.ends_at = max(now, window.starts_at)
    window.updated_at = now
    _set_occurrence(window, now)
    wake_open_incidents(now)
    db.session.commit()
    return window


def _assign(window: MaintenanceWindow, fields: dict[str, Any], now: dt.datetime) -> None:
    fields = dict(fields)
    application_uuids = fields.pop("applications", None)
    for name, value in fields.items():
        setattr(window, name, value)
    if application_uuids is not None:
        window.application_rows = _applications_by_uuid(application_uuids)
    if window.kind != "snooze":
        window.kind = "recurring" if window.cron else "one_off"
    _check_complete(window)
    window.covers_all = not window.application_rows and not window.tags
    _set_occurrence(window, now)


def _check_complete(window: MaintenanceWindow) -> None:
    one_off = window.starts_at is not None or window.ends_at is not None
    recurring = window.cron is not None or window.duration_seconds is not None
    if one_off and recurring:
        raise ValidationFailed({"cron": ["Give starts_at and ends_at (one-off) or cron and "
                                         "duration_seconds (recurring), not both."]})
    if recurring:
        missing = [name for name in ("cron", "duration_seconds") if getattr(window, name) is None]
    else:
        missing = [name for name in ("starts_at", "ends_at") if getattr(window, name) is None]
    if missing:
        raise ValidationFailed({name: ["Missing data for required field."] for name in missing})
    if not recurring and window.ends_at <= window.starts_at:
        raise ValidationFailed({"ends_at": ["Must be after starts_at."]})


def _applications_by_uuid(uuids: list[Any]) -> list[Application]:
    wanted = list(dict.fromkeys(str(uuid) for uuid in uuids))
    found = {application.uuid: application for application in db.session.execute(
        select(Application).where(Application.uuid.in_(wanted))).scalars()}
    missing = [uuid for uuid in wanted if uuid not in found]
    if missing:
        raise ValidationFailed({"applications": [f"Unknown application uuids: {missing}"]})
    return [found[uuid] for uuid in wanted]


# --- Snooze: a window for one application, from now ------------------------------------------

def current_snooze(application: Application, now: dt.datetime) -> MaintenanceWindow | None:
    return db.session.execute(
        select(MaintenanceWindow).join(maintenance_window_applications).where(
            maintenance_window_applications.c.application_id == application.id,
            MaintenanceWindow.kind == "snooze", MaintenanceWindow.ends_at > now)
        .order_by(MaintenanceWindow.ends_at.desc()).limit(1)).scalar_one_or_none()


def snooze(application: Application, until: dt.datetime, now: dt.datetime) -> MaintenanceWindow:
    """Hold the application's alerts from now until `until` (a later snooze replaces it)."""
    if until <= now:
        raise ValidationFailed({"until": ["Must be in the future."]})
    window = current_snooze(application, now)
    if window is None:
        window = MaintenanceWindow(name=f"snooze: {application.name}"[:200], kind="snooze",
                                   starts_at=now, timezone="UTC", tags=[], covers_all=False,
                                   created_at=now, application_rows=[application])
        db.session.add(window)
    window.ends_at, window.updated_at = until, now
    _set_occurrence(window, now)
    wake_open_incidents(now)
    db.session.commit()
    return window


def end_snooze(application: Application, now: dt.datetime) -> None:
    window = current_snooze(application, now)
    if window is not None:
        window.ends_at = max(now, window.starts_at)
        window.updated_at = now
        _set_occurrence(window, now)
        wake_open_incidents(now)
    db.session.commit()
