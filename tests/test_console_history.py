"""console/history.py: the timeline's painting of overlapping intervals (pure, no database)."""
from __future__ import annotations

import datetime as dt

from console.history import Segment, paint, status_periods


def at(hour: int) -> dt.datetime:
    return dt.datetime(2030, 1, 1, hour, tzinfo=dt.timezone.utc)


def test_later_states_win_overlaps_and_neighbours_merge():
    layers = [(at(0), at(10), "up"), (at(2), at(4), "down"), (at(3), at(5), "maintenance"),
              (at(5), at(6), "up"), (at(7), at(7), "down")]
    assert paint(layers, at(1), at(8)) == [
        Segment(at(1), at(2), "up"), Segment(at(2), at(3), "down"),
        Segment(at(3), at(5), "maintenance"), Segment(at(5), at(8), "up")]


def test_nothing_known_is_one_segment_of_none_and_lower_states_do_not_win():
    assert paint([], at(1), at(8)) == [Segment(at(1), at(8), "none")]
    assert paint([(at(0), at(9), "down"), (at(2), at(3), "up")], at(1), at(8)) == [
        Segment(at(1), at(8), "down")]


def test_status_periods_run_from_change_to_change_and_short_runs_merge_to_the_worst():
    minute = dt.timedelta(minutes=1)
    changes = [(at(0), "up"), (at(1), "late"), (at(2), "down"), (at(3), "up")]
    assert status_periods(changes, at(4), minute) == [
        (at(0), at(1), "up"), (at(1), at(2), "late"), (at(2), at(3), "down"),
        (at(3), at(4), "up")]
    # Flapping every 20 s for an hour, drawn 10 minutes a pixel: one "down" per pixel at most.
    flapping = [(at(5) + index * minute / 3, ("up", "down")[index % 2]) for index in range(180)]
    periods = status_periods(changes + flapping, at(6) + minute, 10 * minute)
    assert periods[:4] == [(at(0), at(1), "up"), (at(1), at(2), "late"),
                           (at(2), at(3), "down"), (at(3), at(5), "up")]
    assert len(periods) == 4 + 6 and {state for _, _, state in periods[4:]} == {"down"}
    assert periods[-1][1] == at(6) + minute


def test_a_week_of_flapping_every_minute_paints_at_most_two_segments_a_pixel():
    week = dt.timedelta(days=7)
    start = at(0)
    changes = [(start + dt.timedelta(minutes=n), ("up", "down")[n % 2])
               for n in range(10_080)]
    layers = status_periods(changes, start + week, week / 1000)
    assert len(paint(layers, start, start + week)) <= 2000
