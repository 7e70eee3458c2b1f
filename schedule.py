"""Schedules: when the next heartbeat is due, for a fixed period or a cron expression."""
from __future__ import annotations

import datetime as dt
import zoneinfo

from croniter import croniter


def next_deadline(period_seconds: int | None, cron: str | None, timezone: str,
                  after: dt.datetime) -> dt.datetime:
    """The moment the next heartbeat is expected, given one received at `after`."""
    if cron:
        return next_cron_fire(cron, timezone, after)
    return after + dt.timedelta(seconds=period_seconds or 86400)


def next_cron_fire(cron: str, timezone: str, after: dt.datetime) -> dt.datetime:
    """The first fire time of `cron` in `timezone` strictly after `after`, in UTC."""
    zone = zoneinfo.ZoneInfo(timezone)
    local = after.astimezone(zone)
    fire = croniter(cron, local).get_next(dt.datetime)
    return fire.astimezone(dt.timezone.utc)
