"""Cron schedules in a time zone, across daylight-saving changes."""
from __future__ import annotations

import datetime as dt

import pytest

from schedule import next_cron_fire, next_deadline

UTC = dt.timezone.utc


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize("zone, after, expected", [
    # Europe/Berlin springs forward on 2030-03-31 at 02:00 -> 03:00 (CET -> CEST).
    ("Europe/Berlin", utc(2030, 3, 29, 12), utc(2030, 3, 30, 0, 30)),   # 01:30 CET
    ("Europe/Berlin", utc(2030, 3, 30, 12), utc(2030, 3, 31, 0, 30)),   # 01:30 CET, before the jump
    ("Europe/Berlin", utc(2030, 3, 31, 12), utc(2030, 3, 31, 23, 30)),  # 01:30 CEST
    # ... and falls back on 2030-10-27 at 03:00 -> 02:00.
    ("Europe/Berlin", utc(2030, 10, 26, 12), utc(2030, 10, 26, 23, 30)),  # 01:30 CEST
    ("Europe/Berlin", utc(2030, 10, 27, 12), utc(2030, 10, 28, 0, 30)),   # 01:30 CET
    # America/New_York springs forward on 2030-03-10 and falls back on 2030-11-03.
    ("America/New_York", utc(2030, 3, 9, 12), utc(2030, 3, 10, 6, 30)),   # 01:30 EST
    ("America/New_York", utc(2030, 3, 10, 12), utc(2030, 3, 11, 5, 30)),  # 01:30 EDT
    ("America/New_York", utc(2030, 11, 2, 12), utc(2030, 11, 3, 5, 30)),  # 01:30 EDT (first)
    ("America/New_York", utc(2030, 11, 3, 12), utc(2030, 11, 4, 6, 30)),  # 01:30 EST
])
def test_daily_cron_keeps_local_wall_time_across_dst(zone, after, expected):
    assert next_cron_fire("30 1 * * *", zone, after) == expected


@pytest.mark.parametrize("zone, after, expected", [
    # 02:30 does not exist on the spring-forward day: the job runs at the next valid time.
    ("Europe/Berlin", utc(2030, 3, 30, 12), utc(2030, 3, 31, 1, 0)),
    ("America/New_York", utc(2030, 3, 9, 12), utc(2030, 3, 10, 7, 0)),
])
def test_cron_in_the_skipped_hour_fires_once_after_the_gap(zone, after, expected):
    fire = next_cron_fire("30 2 * * *", zone, after)
    assert expected - dt.timedelta(hours=1) < fire <= expected + dt.timedelta(hours=1)
    assert fire > after


def test_hourly_cron_across_fall_back_has_no_gap_longer_than_an_hour():
    moment = utc(2030, 10, 26, 22)
    fires = []
    for _ in range(6):
        moment = next_cron_fire("0 * * * *", "Europe/Berlin", moment)
        fires.append(moment)
    gaps = {(b - a).total_seconds() for a, b in zip(fires, fires[1:])}
    assert gaps == {3600.0}


def test_period_deadline_is_last_ping_plus_period():
    assert next_deadline(90, None, "UTC", utc(2030, 1, 1)) == utc(2030, 1, 1, 0, 1, 30)
