"""Spool replay (SPEC §6.6): what was spooled while the database was down, stored once, in order.

The monitor calls replay_spools before it judges any deadline, so an application whose
heartbeats waited in the spool is not declared down for their absence.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from database import is_connection_error
from exceptions import HeartbeatNotFound
from ingest.orm_store import write_heartbeats
from ingest.signals import Signal
from ingest.slug_routes import spooled_route_uuid
from monitoring.error_tracking import replay_error_records
from runtime import current_runtime
from spool import Spool

log = logging.getLogger(__name__)


def signal_from_record(record: dict[str, Any]) -> tuple[str, Signal]:
    """A spooled heartbeat (its view, received_at as text) back as a Signal."""
    fields = {name: record.get(name) for name in (
        "kind", "exit_code", "duration_ms", "rid", "method", "remote_addr", "user_agent",
        "uuid")}
    signal = Signal(received_at=dt.datetime.fromisoformat(record["received_at"]),
                    message=record.get("message") or "", source=record.get("source") or "ping",
                    metadata_json=record.get("metadata"), **fields)
    return record["application_uuid"], signal


def replay_heartbeats(spool: Spool) -> int:
    """Store every spooled heartbeat, oldest first, once; unknown UUIDs are dropped.

    A record the database refuses for a reason other than being unreachable is set aside in
    the spool's `.rejected` file, so it cannot block every later replay.
    """
    def store(records: list[dict[str, Any]]) -> None:
        try:
            _store_records(records)
        except Exception as error:
            if is_connection_error(error):
                raise  # the database went away again: the file stays for the next replay
            for record in records:
                try:
                    _store_records([record])
                except Exception as refused:
                    if is_connection_error(refused):
                        raise
                    log.error("set aside a spooled heartbeat the database refuses (%s)",
                              type(refused).__name__)
                    spool.set_aside(record)
    return spool.replay(store)


def _store_records(records: list[dict[str, Any]]) -> None:
    items = []
    for record in records:
        application_uuid, signal = signal_from_record(record)
        if application_uuid is None:  # a slug ping whose route was not known when spooled
            application_uuid = spooled_route_uuid(record["ping_key_hash"], record["slug"])
            if application_uuid is None:
                log.info("dropped a spooled slug ping for an unknown ping key or slug")
                continue
        items.append((application_uuid, signal))
    for (application_uuid, _), result in zip(items, write_heartbeats(items, replay=True)):
        if isinstance(result, HeartbeatNotFound):
            log.info("dropped a spooled heartbeat for unknown application %s", application_uuid)


def replay_spools(now: dt.datetime) -> None:
    """Store what was spooled while the database was down, before any deadline is judged."""
    runtime = current_runtime()
    if not runtime.heartbeat_spool.is_empty():
        count = replay_heartbeats(runtime.heartbeat_spool)
        log.info("replayed %d spooled heartbeats", count)
    if not runtime.error_spool.is_empty():
        runtime.error_spool.replay(replay_error_records)
