"""Retention: heartbeats and status changes older than HEARTBEAT_RETENTION_DAYS are deleted by
housekeeping (of each application's status changes the latest before the cutoff stays: it is
the status the retained history starts in).

On PostgreSQL whole days go at once: the daily partitions past the retention are detached and
dropped (heartbeat_partitions.py), and only what waits in the default partition is deleted row
by row.
A heartbeat is then kept between HEARTBEAT_RETENTION_DAYS and one day more. On SQLite every
heartbeat goes row by row, as soon as it is past the retention.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import aliased

from database import db
from heartbeat_partitions import (
    default_partition,
    drop_retired_partitions,
    partitioned,
    retire_heartbeat_partitions,
)
from models import Heartbeat, StatusChange
from runtime import current_runtime

PRUNE_BATCH_SIZE = 5000
PRUNE_MAX_BATCHES = 20


def prune_old_heartbeats(now: dt.datetime) -> int:
    """Drop or delete heartbeats received more than HEARTBEAT_RETENTION_DAYS ago; returns how
    many were deleted row by row (a dropped partition is not counted: counting would read it).
    """
    days = current_runtime().settings.HEARTBEAT_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = now - dt.timedelta(days=days)
    if not partitioned():
        return delete_old_rows(Heartbeat.__table__, cutoff)
    retire_heartbeat_partitions(cutoff)
    drop_retired_partitions()
    return delete_old_rows(default_partition, cutoff)


def delete_old_rows(heartbeats, cutoff: dt.datetime) -> int:
    """Delete the rows of `heartbeats` (the table, or the default partition) received before
    `cutoff`; returns the count.

    Walks up from the oldest id in batches (ids follow arrival), so it needs no index on
    received_at and, once the oldest heartbeat is recent enough, costs one primary-key lookup.
    A heartbeat replayed from the spool, older than its id, may outlive the retention a little
    but never goes early. Rows another process is deleting are skipped, not waited for. At
    most PRUNE_MAX_BATCHES per call: the next housekeeping goes on.
    """
    deleted = 0
    for _ in range(PRUNE_MAX_BATCHES):
        oldest = db.session.execute(select(heartbeats.c.id, heartbeats.c.received_at)
                                    .order_by(heartbeats.c.id).limit(1)).first()
        if oldest is None or oldest.received_at >= cutoff:
            break
        old = (select(heartbeats.c.id)
               .where(heartbeats.c.id < oldest.id + PRUNE_BATCH_SIZE,
                      heartbeats.c.received_at < cutoff)
               .with_for_update(skip_locked=True))
        count = db.session.execute(delete(heartbeats).where(heartbeats.c.id.in_(old))).rowcount
        db.session.commit()
        deleted += count
        if count == 0:  # another process holds these rows: it is pruning them
            break
    db.session.commit()
    return deleted


def prune_old_status_changes(now: dt.datetime) -> int:
    """Delete status changes older than HEARTBEAT_RETENTION_DAYS that a later change, also
    before the cutoff, supersedes; returns the count. At most PRUNE_MAX_BATCHES batches."""
    days = current_runtime().settings.HEARTBEAT_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = now - dt.timedelta(days=days)
    later = aliased(StatusChange)
    superseded = (select(StatusChange.id)
                  .where(StatusChange.changed_at < cutoff,
                         exists().where(later.application_id == StatusChange.application_id,
                                        later.changed_at > StatusChange.changed_at,
                                        later.changed_at < cutoff))
                  .limit(PRUNE_BATCH_SIZE))
    deleted = 0
    for _ in range(PRUNE_MAX_BATCHES):
        ids = list(db.session.execute(superseded).scalars())
        if ids:
            db.session.execute(delete(StatusChange).where(StatusChange.id.in_(ids)))
        db.session.commit()
        deleted += len(ids)
        if len(ids) < PRUNE_BATCH_SIZE:
            break
    return deleted
