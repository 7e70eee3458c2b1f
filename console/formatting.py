"""How the console writes times, durations and names for people (always with the time zone)."""
from __future__ import annotations

import datetime as dt

from flask import Flask, request, url_for
from markupsafe import Markup, escape

from utils.clock import utc_iso


def when(moment: dt.datetime | None, empty: str = "—") -> Markup:
    """A UTC time as `<time>`: 2026-12-07 09:05:03 UTC, machine-readable in its attribute."""
    if moment is None:
        return Markup(escape(empty))
    moment = moment.astimezone(dt.timezone.utc)
    return Markup('<time datetime="{}">{}</time>').format(
        utc_iso(moment), moment.strftime("%Y-%m-%d %H:%M:%S UTC"))


def ago(moment: dt.datetime | None, now: dt.datetime) -> str:
    """'3 min ago' style, for people; pair it with `when` for the exact time."""
    if moment is None:
        return "never"
    seconds = int((now - moment).total_seconds())
    suffix = "ago" if seconds >= 0 else "from now"
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} {suffix}"
    return f"{seconds} s {suffix}"


def duration(milliseconds: int | None) -> str:
    """A run's duration: 850 ms, 12.4 s, 3 min 5 s, 2 h 4 min."""
    if milliseconds is None:
        return "—"
    if milliseconds < 1000:
        return f"{milliseconds} ms"
    seconds = milliseconds / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def period(seconds: int | None) -> str:
    """A schedule's period or a grace time in the largest exact unit: 1 h, 90 min, 45 s."""
    if seconds is None:
        return "—"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def next_page_url(cursor: str) -> str:
    """This page again, with its filters, from `cursor` on."""
    arguments = {**request.args.to_dict(), "cursor": cursor}
    return url_for(request.endpoint, **(request.view_args or {}), **arguments)


def install_formatting(app: Flask) -> None:
    app.jinja_env.filters.update(when=when, duration=duration, period=period)
    app.jinja_env.globals.update(ago=ago, next_page_url=next_page_url)
