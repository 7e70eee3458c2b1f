"""Retention: heartbeats older than HEARTBEAT_RETENTION_DAYS are deleted by housekeeping."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select

from database import db
from models import Heartbeat
from runtime import current_runtime

PRUNE_BATCH_SIZE = 5000
PRUNE_MAX_BATCHES = 20


def prune_old_heartbeats(now: dt.datetime) -> int:
    """Delete heartbeats received more than HEARTBEAT_RETENTION_DAYS ago; returns the count.

    Walks up from the oldest id in batches (ids follow arrival), so it needs no index on
    received_at and, once the oldest heartbeat is recent enough, costs one primary-key lookup.
    A heartbeat replayed from the spool, older than its id, may outlive the retention a little
    but never goes early. Rows another process is deleting are skipped, not waited for. At
    most PRUNE_MAX_BATCHES per call: the next housekeeping goes on.
    """
    days = current_runtime().settings.HEARTBEAT_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = now - dt.timedelta(days=days)
    deleted = 0
    for _ in range(PRUNE_MAX_BATCHES):
        oldest = db.session.execute(select(Heartbeat.id, Heartbeat.received_at)
                                    .order_by(Heartbeat.id).limit(1)).first()
        if oldest is None or oldest.received_at >= cutoff:
            break
        old = (select(Heartbeat.id)
               .where(Heartbeat.id < oldest.id + PRUNE_BATCH_SIZE, Heartbeat.received_at < cutoff)
               .with_for_update(skip_locked=True))
        count = db.session.execute(delete(Heartbeat).where(Heartbeat.id.in_(old))).rowcount
        db.session.commit()
        deleted += count
        if count == 0:  # another process holds these rows: it is pruning them
            break
    db.session.commit()
    return deleted
