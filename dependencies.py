"""Dependencies between applications (SPEC §8): `depends_on`, and who holds whose alerts.

An application that goes down while one it depends on (directly or through others) has an open
incident gets its incident marked `suppressed_by` that application, and its down alert is held;
when the ancestor's incident resolves, the held incidents it suppressed are looked at again by
the monitor (incident_timers.py), which queues their alerts if nothing holds them any more.
"""
from __future__ import annotations

import datetime as dt
from typing import Collection, Iterable

from sqlalchemy import func, select, update

from database import db
from exceptions import ValidationFailed
from models import Application, Incident

# Far more than any real chain; a bound on the walk even if a cycle slipped in.
MAX_DEPTH = 100
# Serializes changes of the graph on PostgreSQL, so two changes cannot close a cycle together.
GRAPH_LOCK_KEY = 0x68626D6F6E_01


def set_depends_on(application: Application, parent_uuid: str | None) -> None:
    """Make `application` depend on the application `parent_uuid` (None: on nothing).

    422 for an unknown application, the application itself, or a cycle.
    """
    if parent_uuid is None:
        application.depends_on_id = None
        return
    if db.engine.dialect.name == "postgresql":
        db.session.execute(select(func.pg_advisory_xact_lock(GRAPH_LOCK_KEY)))
    parent = db.session.execute(select(Application.id, Application.depends_on_id).where(
        Application.uuid == str(parent_uuid))).first()
    if parent is None:
        raise ValidationFailed({"depends_on": [f"Unknown application uuid: {parent_uuid}"]})
    if application.id is not None and parent.id == application.id:
        raise ValidationFailed({"depends_on": ["An application cannot depend on itself."]})
    ancestor_id, depth = parent.depends_on_id, 0
    while ancestor_id is not None and application.id is not None:
        if ancestor_id == application.id or depth > MAX_DEPTH:
            raise ValidationFailed({"depends_on": [
                "This would make a cycle: that application depends on this one."]})
        ancestor_id = db.session.scalar(
            select(Application.depends_on_id).where(Application.id == ancestor_id))
        depth += 1
    application.depends_on_id = parent.id


def depends_on_uuid(application: Application) -> str | None:
    if application.depends_on_id is None:
        return None
    return db.session.scalar(select(Application.uuid).where(
        Application.id == application.depends_on_id))


def open_ancestors(applications: Iterable[Application], *, for_opening: bool = False,
                   opening_ids: Collection[int] = ()) -> dict[int, str]:
    """For each application with an ancestor that has an open incident, the nearest one's uuid.

    One query per level of the graph. When incidents are being opened, the ancestors' open
    incidents are read FOR SHARE: an ancestor resolving at the same moment either commits
    first (and is seen resolved) or waits for this transaction (and then finds the incident
    this one opened, to look at it again). An incident already held needs no lock: an
    ancestor resolving meanwhile wakes it after this transaction. `opening_ids` are
    applications whose incidents this transaction is opening (not written yet): open too.
    """
    pending = {application.id: application.depends_on_id for application in applications
               if application.depends_on_id is not None}
    seen = {application_id: {application_id} for application_id in pending}
    found: dict[int, str] = {}
    for _ in range(MAX_DEPTH):
        if not pending:
            break
        ancestor_ids = set(pending.values())
        ancestors = {row.id: row for row in db.session.execute(
            select(Application.id, Application.uuid, Application.depends_on_id)
            .where(Application.id.in_(ancestor_ids)))}
        query = select(Incident.application_id).where(
            Incident.application_id.in_(ancestor_ids), Incident.resolved_at.is_(None))
        if for_opening:
            query = query.with_for_update(read=True)
        with_open = set(db.session.execute(query).scalars())
        following = {}
        for application_id, ancestor_id in pending.items():
            ancestor = ancestors.get(ancestor_id)
            if ancestor is None:
                continue
            if ancestor_id in with_open or ancestor_id in opening_ids:
                found[application_id] = ancestor.uuid
            elif ancestor.depends_on_id is not None \
                    and ancestor.depends_on_id not in seen[application_id]:
                seen[application_id].add(ancestor.depends_on_id)
                following[application_id] = ancestor.depends_on_id
        pending = following
    return found


def wake_suppressed(ancestor_uuid: str, now: dt.datetime) -> None:
    """The ancestor's incident ended: the monitor looks again at the alerts it held."""
    db.session.execute(update(Incident).where(
        Incident.suppressed_by == ancestor_uuid, Incident.resolved_at.is_(None),
        Incident.alerted_at.is_(None)).values(next_check_at=now))
