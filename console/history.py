"""What one application's page draws, read by index and bounded whatever the history's size.

- recent runs: durations among the newest RECENT_HEARTBEATS heartbeats (an index range scan of
  ix_heartbeats_application_received, newest first);
- the status timeline over 24 h or 7 days, from the application's recorded status changes
  (status_changes, written by the database on every change: the last one before the span and
  those inside it, at most MAX_CHANGES, periods narrower than a pixel merged) with the
  maintenance windows and snoozes covering it overlaid — never from every heartbeat.

The SVG itself (rectangles in a 1000-wide view box, each with its time as a tooltip) is
written here in one pass: a week of incidents is hundreds of rectangles, and a template loop
over them was most of the page's time.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from typing import Any

from markupsafe import Markup, escape
from sqlalchemy import or_, select

from database import db
from maintenance import ActiveWindow, WindowsInForce
from models import Application, Heartbeat, MaintenanceWindow, StatusChange

RECENT_HEARTBEATS = 200
MAX_RUNS = 60
MIN_SLOTS = 30  # a bar is at most a 30th of the chart, however few runs there are
VIEW_WIDTH = 1000
# Status changes read for one timeline: a change a minute for a week, and more. Past it the
# span's older part reads "none" (an application flapping faster than that).
MAX_CHANGES = 12_000
# Later entries win where intervals overlap.
PRIORITY = ("none", "new", "up", "late", "down", "maintenance", "paused")


@dataclasses.dataclass(frozen=True)
class Run:
    received_at: dt.datetime
    kind: str
    duration_ms: int


@dataclasses.dataclass(frozen=True)
class Segment:
    start: dt.datetime
    end: dt.datetime
    state: str


def recent_runs(application: Application) -> list[Run]:
    """The newest runs with a duration (start → end pairs, or a reported duration), oldest first."""
    rows = db.session.execute(
        select(Heartbeat.received_at, Heartbeat.kind, Heartbeat.duration_ms)
        .where(Heartbeat.application_id == application.id)
        .order_by(Heartbeat.received_at.desc(), Heartbeat.id.desc())
        .limit(RECENT_HEARTBEATS)).all()
    runs = [Run(row.received_at, row.kind, row.duration_ms) for row in rows
            if row.duration_ms is not None][:MAX_RUNS]
    return runs[::-1]


def duration_chart(runs: list[Run], height: int = 160) -> dict[str, Any]:
    """Bars of the runs' durations, scaled to the longest; failed runs marked."""
    longest = max((run.duration_ms for run in runs), default=0) or 1
    slot = VIEW_WIDTH / max(len(runs), MIN_SLOTS)
    bars = []
    for index, run in enumerate(runs):
        bar_height = max(2.0, (height - 20) * run.duration_ms / longest)
        bars.append({"x": round(index * slot + slot * 0.15, 1), "width": round(slot * 0.7, 1),
                     "y": round(height - bar_height, 1), "height": round(bar_height, 1),
                     "state": "fail" if run.kind == "fail" else "ok", "run": run})
    return {"width": VIEW_WIDTH, "height": height, "bars": bars, "longest_ms": longest}


def status_changes(application: Application, since: dt.datetime,
                   now: dt.datetime) -> tuple[list[tuple[dt.datetime, str]], bool]:
    """(changed_at, status) of the application's status history that the span shows, oldest
    first: the last change before `since` and up to MAX_CHANGES of the newest inside it (two
    range scans of ix_status_changes_application_changed). True when the span held more."""
    inside = db.session.execute(
        select(StatusChange.changed_at, StatusChange.status)
        .where(StatusChange.application_id == application.id,
               StatusChange.changed_at >= since, StatusChange.changed_at <= now)
        .order_by(StatusChange.changed_at.desc(), StatusChange.id.desc())
        .limit(MAX_CHANGES + 1)).all()
    truncated = len(inside) > MAX_CHANGES
    changes = [(row.changed_at, row.status) for row in inside[:MAX_CHANGES]][::-1]
    if not truncated:
        before = db.session.execute(
            select(StatusChange.changed_at, StatusChange.status)
            .where(StatusChange.application_id == application.id,
                   StatusChange.changed_at < since)
            .order_by(StatusChange.changed_at.desc(), StatusChange.id.desc())
            .limit(1)).first()
        if before is not None:
            changes.insert(0, (before.changed_at, before.status))
    return changes, truncated


def status_periods(changes: list[tuple[dt.datetime, str]], now: dt.datetime,
                   pixel: dt.timedelta) -> list[tuple[dt.datetime, dt.datetime, str]]:
    """(start, end, status) of each status held, merged so that none but the last of a run is
    narrower than `pixel`: a run of short periods is drawn as one, in the state that matters
    most among them (PRIORITY: down over late over up). At most about two per pixel."""
    periods = [(changed_at, following, status) for (changed_at, status), (following, _)
               in zip(changes, changes[1:] + [(now, "")])]
    merged: list[tuple[dt.datetime, dt.datetime, str]] = []
    pending: tuple[dt.datetime, dt.datetime, str] | None = None
    for start, end, status in periods:
        if end - start >= pixel:
            if pending is not None:
                merged.append(pending)
                pending = None
            merged.append((start, end, status))
            continue
        if pending is not None:
            status = max(pending[2], status, key=PRIORITY.index)
            start = pending[0]
        pending = (start, end, status)
        if end - start >= pixel:
            merged.append(pending)
            pending = None
    if pending is not None:
        merged.append(pending)
    return merged


def covering_windows(application: Application, since: dt.datetime,
                     now: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """(start, end) of maintenance covering the application within the span: one-off windows
    and snoozes, and the recurring windows' latest occurrence; coverage judged by
    maintenance.WindowsInForce, as the monitor judges it."""
    windows = db.session.execute(select(MaintenanceWindow).where(or_(
        MaintenanceWindow.ends_at > since,
        MaintenanceWindow.occurrence_ends_at > since))).scalars()
    spans = []
    for window in windows:
        start = window.occurrence_starts_at if window.cron else window.starts_at
        end = window.occurrence_ends_at if window.cron else window.ends_at
        if start is None or start >= now:
            continue
        spans.append(ActiveWindow(window.id, window.kind, start, min(end or now, now),
                                  window.covers_all, frozenset(window.tags or ()),
                                  frozenset(row.id for row in window.application_rows)))
    return [(window.starts_at, window.ends_at)
            for window in WindowsInForce(spans).covering(application)]


def paint(layers: list[tuple[dt.datetime, dt.datetime, str]], since: dt.datetime,
          until: dt.datetime) -> list[Segment]:
    """Non-overlapping segments from [since, until): where intervals overlap the state later in
    PRIORITY wins; neighbours in one state merge. One sweep over the intervals' ends."""
    events = []
    for start, end, state in layers:
        start, end = max(start, since), min(end, until)
        if end > start:
            events += [(start, 1, state), (end, -1, state)]
    events.sort(key=lambda event: event[0])
    covering: Counter[str] = Counter()
    segments: list[Segment] = []
    moment, index = since, 0
    while moment < until:
        while index < len(events) and events[index][0] <= moment:
            covering[events[index][2]] += events[index][1]
            index += 1
        following = min(events[index][0], until) if index < len(events) else until
        state = max((name for name, count in covering.items() if count > 0),
                    key=PRIORITY.index, default="none")
        if segments and segments[-1].state == state:
            segments[-1] = Segment(segments[-1].start, following, state)
        else:
            segments.append(Segment(moment, following, state))
        moment = following
    return segments


def status_timeline(application: Application, now: dt.datetime,
                   span: dt.timedelta) -> list[Segment]:
    """The span's segments: the recorded status history (before it was recorded, and before a
    history too long to read, "none"), maintenance windows and snoozes over it."""
    since = now - span
    changes, _ = status_changes(application, since, now)
    layers = status_periods(changes, now, span / VIEW_WIDTH)
    for start, end in covering_windows(application, since, now):
        layers.append((start, end, "maintenance"))
    return paint(layers, since, now)


def timeline_chart(segments: list[Segment], now: dt.datetime, span: dt.timedelta,
                   tick: dt.timedelta) -> dict[str, Any]:
    """Rectangles and tick marks of a timeline, in a VIEW_WIDTH-wide view box."""
    since = now - span
    scale = VIEW_WIDTH / span.total_seconds()
    rects = [{"x": round((segment.start - since).total_seconds() * scale, 2),
              "width": round((segment.end - segment.start).total_seconds() * scale, 2),
              "segment": segment} for segment in segments]
    ticks = []
    moment = now - tick
    while moment > since:
        ticks.append({"x": round((moment - since).total_seconds() * scale, 2), "at": moment})
        moment -= tick
    return {"width": VIEW_WIDTH, "rects": rects, "ticks": ticks, "since": since}


def _minute(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def timeline_svg(chart: dict[str, Any], label: str, tick_format: str) -> Markup:
    """A timeline as SVG: one rectangle per segment (data-state names it), ticks below."""
    parts = [f'<svg class="chart timeline" viewBox="0 0 {chart["width"]} 40" role="img" '
             f'aria-label="Status over the last {escape(label)}">']
    for rect in chart["rects"]:
        segment = rect["segment"]
        parts.append(f'<rect class="seg-{segment.state}" x="{rect["x"]}" y="0" '
                     f'width="{rect["width"]}" height="24" data-state="{segment.state}">'
                     f'<title>{segment.state}: {_minute(segment.start)} – '
                     f'{_minute(segment.end)}</title></rect>')
    for tick in chart["ticks"]:
        parts.append(f'<line class="axis" x1="{tick["x"]}" y1="0" x2="{tick["x"]}" y2="28">'
                     f'</line><text x="{tick["x"]}" y="38" text-anchor="middle">'
                     f'{tick["at"].strftime(tick_format)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
