"""The general ingest path: heartbeats written through the ORM, incidents opened and resolved.

Every heartbeat can take this path; the writer sends a batch here when the PostgreSQL path
(pg_store.py) cannot take it (an application crosses the up/down boundary, or the database is
SQLite) and for spool replay.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import lazyload

from database import db
from exceptions import HeartbeatNotFound
from incidents import apply_transition
from ingest.signals import Signal, heartbeat_view
from models import HEARTBEAT_COLUMNS, Application, Heartbeat
from status_rules import HeartbeatFacts, apply_heartbeat, stored_kind

Result = dict[str, Any] | HeartbeatNotFound


def record_heartbeat(application_uuid: str, signal: Signal) -> dict[str, Any]:
    """Store one heartbeat and apply it to its application in one transaction."""
    (result,) = write_heartbeats([(application_uuid, signal)])
    if isinstance(result, HeartbeatNotFound):
        raise result
    return result


def write_heartbeats(items: list[tuple[str, Signal]], *, replay: bool = False) -> list[Result]:
    """Store heartbeats in one transaction; an unknown UUID yields HeartbeatNotFound for it.

    Applications are locked in id order, so concurrent writers cannot deadlock. On replay,
    heartbeats already stored are skipped and ones older than the application's latest are
    kept as history without changing its status. On failure the session is rolled back.
    """
    try:
        return _write(items, replay)
    except Exception:
        db.session.rollback()
        raise


def heartbeat_row(view: dict[str, Any], application_id: int) -> dict[str, Any]:
    """A heartbeat's view as the row the heartbeats table stores."""
    return {**{name: view.get(name) for name in HEARTBEAT_COLUMNS},
            "application_id": application_id}


def _write(items: list[tuple[str, Signal]], replay: bool) -> list[Result]:
    uuids = sorted({application_uuid for application_uuid, _ in items})
    applications = {application.uuid: application for application in db.session.execute(
        select(Application).where(Application.uuid.in_(uuids)).order_by(Application.id)
        .options(lazyload(Application.tag_rows), lazyload(Application.channels))
        .with_for_update()).scalars()}
    stored: set[str] = set()
    if replay:
        # Their times too: on PostgreSQL only their days' partitions are looked in.
        times = list({signal.received_at for _, signal in items})
        stored = set(db.session.execute(select(Heartbeat.uuid).where(
            Heartbeat.uuid.in_([signal.uuid for _, signal in items]),
            Heartbeat.received_at.in_(times))).scalars())
    results: list[Result] = []
    rows: list[dict[str, Any]] = []
    for application_uuid, signal in items:
        application = applications.get(application_uuid)
        if application is None:
            results.append(HeartbeatNotFound(application_uuid))
            continue
        if signal.uuid in stored:
            results.append(heartbeat_view(application_uuid, signal))
            continue
        kind = stored_kind(application, signal.kind, signal.method)
        facts = HeartbeatFacts(kind, signal.received_at, signal.rid, signal.duration_ms)
        stale = replay and application.last_heartbeat_at is not None \
            and signal.received_at < application.last_heartbeat_at
        transition = None if stale else apply_heartbeat(application, facts)
        stored.add(signal.uuid)
        view = heartbeat_view(application_uuid, signal, facts.duration_ms, kind)
        rows.append(heartbeat_row(view, application.id))
        results.append(view)
        if transition is not None:
            # Stored first: the alerts of the transition quote the heartbeat that caused it.
            db.session.execute(insert(Heartbeat.__table__), rows)
            rows = []
            apply_transition(application, transition, signal.received_at)
    if rows:
        # One multi-row INSERT for the batch; the heartbeats' ids are never read back.
        db.session.execute(insert(Heartbeat.__table__), rows)
    db.session.commit()
    return results
