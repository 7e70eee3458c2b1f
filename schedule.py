"""Schedules: when the next heartbeat is due, for a fixed period or a cron expression.

Cron expressions have the five standard fields (or a macro such as `@daily`) and are read in
the application's IANA time zone the way cron daemons read them across daylight-saving
changes: a job whose time falls in the hour skipped in spring runs once, right after the jump;
a job at a fixed time (minute and hour fields without `*`) runs once, not twice, in the hour
repeated in autumn, while `*` jobs (hourly and the like) run on through both.
"""
from __future__ import annotations

import datetime as dt
import logging
import zoneinfo

from croniter import CroniterError, croniter

log = logging.getLogger(__name__)

DEFAULT_PERIOD_SECONDS = 86400
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# Names the time zone database holds that name no place: the host's own zone, tzdata's
# placeholder, and the helper files of the zoneinfo directory.
NON_GEOGRAPHIC_ZONES = {"localtime", "Factory", "posixrules"}
NON_GEOGRAPHIC_PREFIXES = ("posix/", "right/", "SystemV/")


class InvalidSchedule(ValueError):
    """A cron expression or time zone that cannot give a deadline."""


def next_deadline(period_seconds: int | None, cron: str | None, timezone: str,
                  after: dt.datetime) -> dt.datetime:
    """The moment the next heartbeat is expected, given one received at `after`.

    Total: a stored schedule that gives no next fire (written before the checks of
    check_cron existed, or a time zone the host no longer knows) falls back to the default
    period, one day after `after`, so a heartbeat is never refused because of it.
    """
    if cron:
        try:
            return next_cron_fire(cron, timezone, after)
        except (CroniterError, ValueError, OverflowError, zoneinfo.ZoneInfoNotFoundError):
            log.warning("cron schedule %r in %r gives no next fire; the next deadline is one "
                        "day away", cron[:200], timezone[:64])
            return after + dt.timedelta(seconds=DEFAULT_PERIOD_SECONDS)
    return after + dt.timedelta(seconds=period_seconds or DEFAULT_PERIOD_SECONDS)


def next_cron_fire(cron: str, timezone: str, after: dt.datetime) -> dt.datetime:
    """The first fire time of `cron` in `timezone` strictly after `after`, in UTC."""
    zone = zoneinfo.ZoneInfo(timezone)
    fires = croniter(cron, after.astimezone(zone))
    fixed_time = _is_fixed_time(cron)
    while True:
        fire = fires.get_next(dt.datetime)
        if fixed_time and _is_repeated_wall_time(fire):
            continue  # already fired at this wall time, before the clocks went back
        return fire.astimezone(dt.timezone.utc)


def _is_fixed_time(cron: str) -> bool:
    """True when the minute and hour fields name times (no `*`), as in `30 2 * * *`."""
    if cron.startswith("@"):
        return cron != "@hourly"
    minute, hour = cron.split()[:2]
    return "*" not in minute and "*" not in hour


def _is_repeated_wall_time(local: dt.datetime) -> bool:
    """True for the second occurrence of a wall time the clocks went back over."""
    return local.fold == 1 and local.utcoffset() != local.replace(fold=0).utcoffset()


def check_timezone(name: str) -> None:
    """Raise InvalidSchedule unless `name` is an IANA time zone of a place (or UTC, Etc/…)."""
    if name in NON_GEOGRAPHIC_ZONES or name.startswith(NON_GEOGRAPHIC_PREFIXES):
        raise InvalidSchedule("Not a geographic IANA time zone.")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # "Europe" is a directory
        raise InvalidSchedule("Unknown IANA time zone.")


def check_cron(expression: str, now: dt.datetime) -> None:
    """Raise InvalidSchedule unless `expression` is a five-field cron that fires after `now`."""
    if expression.startswith("@"):
        if expression not in CRON_MACROS:
            raise InvalidSchedule(f"Unknown macro; use one of {', '.join(CRON_MACROS)}.")
    elif len(expression.split()) != 5:
        raise InvalidSchedule("A cron expression has five fields: minute hour day-of-month "
                              "month day-of-week (no seconds, no year).")
    if not croniter.is_valid(expression):
        raise InvalidSchedule("Not a valid cron expression.")
    try:
        croniter(expression, now).get_next(dt.datetime)
    except (CroniterError, ValueError, OverflowError):  # 0 0 31 2 *
        raise InvalidSchedule("This cron expression never fires.")
