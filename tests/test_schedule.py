"""Cron schedules in a time zone, across daylight-saving changes."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

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


# The real daylight-saving changes of several zones in 2030, with a fixed-time job whose
# wall time the change repeats (autumn) or skips (spring). Lord Howe shifts by 30 minutes.
AUTUMN = [("Europe/Berlin", dt.date(2030, 10, 27), "30 2 * * *"),
          ("Europe/London", dt.date(2030, 10, 27), "30 1 * * *"),
          ("America/New_York", dt.date(2030, 11, 3), "30 1 * * *"),
          ("Australia/Sydney", dt.date(2030, 4, 7), "30 2 * * *"),
          ("Australia/Lord_Howe", dt.date(2030, 4, 7), "45 1 * * *")]
SPRING = [("Europe/Berlin", dt.date(2030, 3, 31), "30 2 * * *"),
          ("Europe/London", dt.date(2030, 3, 31), "30 1 * * *"),
          ("America/New_York", dt.date(2030, 3, 10), "30 2 * * *"),
          ("Australia/Sydney", dt.date(2030, 10, 6), "30 2 * * *"),
          ("Australia/Lord_Howe", dt.date(2030, 10, 6), "15 2 * * *")]


def _wall_time(day: dt.date, cron: str, zone: str, fold: int = 0) -> dt.datetime:
    minute, hour = (int(part) for part in cron.split()[:2])
    return dt.datetime.combine(day, dt.time(hour, minute, fold=fold), ZoneInfo(zone))


def _fires(cron: str, zone: str, day: dt.date, count: int = 4) -> list[dt.datetime]:
    """`count` fires from noon of the day before `day`, as local times."""
    moment = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(12), ZoneInfo(zone))
    fires = []
    for _ in range(count):
        moment = next_cron_fire(cron, zone, moment)
        fires.append(moment.astimezone(ZoneInfo(zone)))
    return fires


@pytest.mark.parametrize("zone, day, cron", AUTUMN, ids=[case[0] for case in AUTUMN])
def test_a_fixed_time_job_fires_once_in_the_repeated_hour(zone, day, cron):
    first, repeated = _wall_time(day, cron, zone), _wall_time(day, cron, zone, fold=1)
    assert first.utcoffset() != repeated.utcoffset()  # the wall time really happens twice
    fires = _fires(cron, zone, day)
    assert [fire.date() for fire in fires] == [day + dt.timedelta(days=n) for n in range(4)]
    assert fires[0].astimezone(UTC) == first.astimezone(UTC)
    assert repeated.astimezone(UTC) not in {fire.astimezone(UTC) for fire in fires}
    # After the first 02:30 has fired, the next deadline is the next day's, not 02:30 again.
    assert next_cron_fire(cron, zone, first.astimezone(UTC)) == fires[1].astimezone(UTC)


@pytest.mark.parametrize("zone, day, cron", SPRING, ids=[case[0] for case in SPRING])
def test_a_job_in_the_skipped_hour_fires_once_right_after_the_jump(zone, day, cron):
    wall = _wall_time(day, cron, zone)
    assert wall.astimezone(UTC).astimezone(ZoneInfo(zone)).time() != wall.time()  # no such time
    fires = _fires(cron, zone, day)
    assert [fire.date() for fire in fires] == [day + dt.timedelta(days=n) for n in range(4)]
    jump = fires[0]
    assert jump.utcoffset() != (jump - dt.timedelta(minutes=1)).utcoffset()  # at the change
    assert all(fire.time() == wall.time() for fire in fires[1:])


def test_hourly_job_still_fires_in_both_repeated_hours():
    fires = _fires("0 * * * *", "America/New_York", dt.date(2030, 11, 3), count=16)
    local_one_oclock = [fire for fire in fires if fire.hour == 1]
    assert len(local_one_oclock) == 2 and len({f.utcoffset() for f in local_one_oclock}) == 2


@pytest.mark.parametrize("cron, timezone", [
    ("0 0 1 1 * 0 2020", "UTC"),  # a year in the past: croniter finds no next fire
    ("0 0 31 2 *", "UTC"),
    ("0 3 * * *", "Mars/Olympus_Mons"),
])
def test_a_stored_schedule_without_a_next_fire_falls_back_to_one_day(cron, timezone):
    after = utc(2030, 1, 1, 12)
    assert next_deadline(None, cron, timezone, after) == after + dt.timedelta(days=1)
