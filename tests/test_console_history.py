"""console/history.py: the timeline's painting of overlapping intervals (pure, no database)."""
from __future__ import annotations

import datetime as dt

from console.history import Segment, paint


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
