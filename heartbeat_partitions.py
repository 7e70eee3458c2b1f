"""Heartbeats' daily partitions on PostgreSQL: created ahead by housekeeping, dropped whole.

On PostgreSQL `heartbeats` is partitioned by RANGE on `received_at` (migration 0011): one
partition a day, `heartbeats_pYYYYMMDD` holding [that midnight, the next) in UTC, and a DEFAULT
partition, `heartbeats_default`, for any heartbeat whose day has no partition, so an insert
never fails for want of one. The monitor's housekeeping keeps today's partition and the next
DAYS_AHEAD days' ready (`create_heartbeat_partitions`), and retention (retention.py) detaches
the partitions whose whole day is past HEARTBEAT_RETENTION_DAYS (`retire_heartbeat_partitions`:
a catalog change, milliseconds whatever the day holds) and then drops them
(`drop_retired_partitions`: the files removed, holding no lock anything else needs).

A partition created for a day that already has heartbeats in the default partition (the
monitor was stopped longer than DAYS_AHEAD days, or a clock jumped) takes them over: they are
moved in the same transaction that attaches it. Each DDL statement waits at most
LOCK_TIMEOUT for its locks (a detach needs the parent table to itself for a moment, and every
insert queues behind a lock it waits for); one that cannot get them is tried again at the next
housekeeping. SQLite has one plain table: nothing here applies to it.
"""
from __future__ import annotations

import datetime as dt
import logging
import re

from sqlalchemy import BigInteger, column, table, text
from sqlalchemy.exc import OperationalError

from database import UTCDateTime, db
from runtime import current_runtime

log = logging.getLogger(__name__)

DAYS_AHEAD = 3
DEFAULT_PARTITION = "heartbeats_default"
LOCK_TIMEOUT = "100ms"
_DAILY_NAME = re.compile(r"^heartbeats_p(\d{8})$")

# The default partition, for the row-wise prune of what lands there.
default_partition = table(DEFAULT_PARTITION, column("id", BigInteger),
                          column("received_at", UTCDateTime))


def partitioned() -> bool:
    """Whether heartbeats are stored in partitions: on PostgreSQL."""
    return not current_runtime().settings.is_sqlite


def partition_name(day: dt.date) -> str:
    return f"heartbeats_p{day:%Y%m%d}"


def daily_partitions() -> dict[dt.date, str]:
    """The daily partitions attached to `heartbeats`, by day."""
    names = db.session.execute(text(
        "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'heartbeats'::regclass")).scalars().all()
    db.session.commit()
    days = {}
    for name in names:
        match = _DAILY_NAME.match(name)
        if match:
            days[dt.datetime.strptime(match.group(1), "%Y%m%d").date()] = name
    return days


def create_heartbeat_partitions(now: dt.datetime) -> list[str]:
    """Housekeeping: today's partition and the next DAYS_AHEAD days', those missing; returns
    the names created."""
    if not partitioned():
        return []
    today = now.astimezone(dt.timezone.utc).date()
    existing = daily_partitions()
    created = []
    for offset in range(DAYS_AHEAD + 1):
        day = today + dt.timedelta(days=offset)
        if day not in existing and _create_partition(day):
            created.append(partition_name(day))
    return created


def _create_partition(day: dt.date) -> bool:
    """Attach the day's partition, moving in what the default partition holds of that day."""
    name = partition_name(day)
    bounds = {"low": dt.datetime.combine(day, dt.time()),
              "high": dt.datetime.combine(day + dt.timedelta(days=1), dt.time())}
    try:
        # The default partition is locked first: no heartbeat of that day can land there
        # between the move and the attach (which would then refuse).
        db.session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        db.session.execute(text(f"LOCK TABLE {DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE"))
        if db.session.execute(text(f"SELECT to_regclass('{name}')")).scalar() is not None:
            db.session.commit()  # another monitor made it while we waited for the lock
            return False
        db.session.execute(text(f"CREATE TABLE {name} (LIKE heartbeats)"))
        # A constraint the bounds imply: ATTACH then need not scan the table to check them.
        low, high = _literal(bounds["low"]), _literal(bounds["high"])
        db.session.execute(text(f"ALTER TABLE {name} ADD CONSTRAINT {name}_bounds "
                                f"CHECK (received_at >= {low} AND received_at < {high})"))
        moved = db.session.execute(text(
            f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} "
            "WHERE received_at >= :low AND received_at < :high RETURNING *) "
            f"INSERT INTO {name} SELECT * FROM moved"), bounds).rowcount
        db.session.execute(text(f"ALTER TABLE heartbeats ATTACH PARTITION {name} "
                                f"FOR VALUES FROM ({low}) TO ({high})"))
        db.session.execute(text(f"ALTER TABLE {name} DROP CONSTRAINT {name}_bounds"))
        db.session.commit()
    except OperationalError as error:  # a lock not granted in time: the next housekeeping
        db.session.rollback()
        log.warning("heartbeat partition %s not created, will retry: %s", name,
                    type(error.orig).__name__)
        return False
    if moved:
        log.info("heartbeat partition %s created with %d heartbeats from %s", name, moved,
                 DEFAULT_PARTITION)
    return True


def retire_heartbeat_partitions(cutoff: dt.datetime) -> list[str]:
    """Detach the daily partitions holding only heartbeats received before `cutoff`; returns
    the names detached (one whose locks are busy waits for the next housekeeping).

    Detaching changes the catalog only: it holds the table's lock for milliseconds whatever
    the day holds. Removing the files is drop_retired_partitions' part.
    """
    cutoff_naive = cutoff.astimezone(dt.timezone.utc).replace(tzinfo=None)
    retired = []
    for day, name in sorted(daily_partitions().items()):
        if dt.datetime.combine(day + dt.timedelta(days=1), dt.time()) > cutoff_naive:
            break
        try:
            db.session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            db.session.execute(text("LOCK TABLE heartbeats IN ACCESS EXCLUSIVE MODE"))
            still_attached = db.session.execute(text(
                "SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(:name) "
                "AND inhparent = 'heartbeats'::regclass"), {"name": name}).first()
            if still_attached:  # else another monitor did it while we waited for the lock
                db.session.execute(text(f"ALTER TABLE heartbeats DETACH PARTITION {name}"))
            db.session.commit()
        except OperationalError as error:
            db.session.rollback()
            log.warning("heartbeat partition %s not detached, will retry: %s", name,
                        type(error.orig).__name__)
            break
        retired.append(name)
    if retired:
        log.info("detached heartbeat partitions past the retention: %s", ", ".join(retired))
    return retired


def drop_retired_partitions() -> list[str]:
    """Drop the detached daily partitions (retired above, or left by a call cut short).

    PostgreSQL removes a dropped table's files as it commits, before it releases its locks,
    and that takes time in proportion to the size (about 2 s for a day of 10 million
    heartbeats on the machine of BENCHMARKS.md). So each table first loses its foreign key to
    applications in a transaction of its own, and is then dropped holding the lock on itself
    only: nothing else waits while its files go.
    """
    names = db.session.execute(text(
        "SELECT relname FROM pg_class WHERE relname ~ '^heartbeats_p[0-9]{8}$' "
        "AND relkind = 'r' AND NOT relispartition "
        "AND relnamespace = current_schema()::regnamespace ORDER BY relname")).scalars().all()
    db.session.commit()
    dropped = []
    for name in names:
        try:
            db.session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            for constraint in db.session.execute(text(
                    "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(:name) "
                    "AND contype = 'f'"), {"name": name}).scalars().all():
                db.session.execute(text(f'ALTER TABLE {name} DROP CONSTRAINT "{constraint}"'))
            db.session.commit()
            db.session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            db.session.execute(text(f"DROP TABLE IF EXISTS {name}"))
            db.session.commit()
        except OperationalError as error:
            db.session.rollback()
            log.warning("retired heartbeat partition %s not dropped, will retry: %s", name,
                        type(error.orig).__name__)
            break
        dropped.append(name)
    return dropped


def _literal(moment: dt.datetime) -> str:
    """A naive UTC timestamp as an SQL literal (partition bounds take no parameters)."""
    return f"'{moment.isoformat(sep=' ')}'"
