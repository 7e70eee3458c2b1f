"""Which application a slug ping URL names (SPEC §9): `/ping/<ping-key>/<slug>` → its UUID.

A slug ping then takes the UUID ping's path whole (writer, group commit, spool). To cost about
what a UUID ping costs, a process remembers the routes it has looked up and asks the database
again only for one it has not seen: a miss is one indexed statement. What it remembers holds
while the database's route counter stands still (migration 0012: triggers raise it whenever a
slug changes, an application is deleted or a ping key is revoked); the counter is read at most
once per CHECK_SECONDS, so such a change reaches every process within that time.

While the database cannot be reached, routes already known keep working (their pings are
spooled like any other); a ping of a route not known yet is spooled by its key (hashed) and
slug, and replay finds its application (or drops it, as it drops an unknown UUID's).
"""
from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING, NamedTuple

from flask import Flask
from sqlalchemy import text
from sqlalchemy.engine import Engine

from auth import hash_key
from database import db, is_connection_error
from exceptions import SlugPingNotFound
from ingest.signals import Signal
from utils.circuit_breaker import Breaker

if TYPE_CHECKING:  # the writer is handed in by its callers
    from ingest.writer import HeartbeatWriter

CHECK_SECONDS = 1.0
CHECK_INTERVAL = dt.timedelta(seconds=CHECK_SECONDS)
# Past this many, a process forgets every route and learns them again.
MAX_ROUTES = 100_000

LOOK_UP = text(
    "SELECT k.id, a.uuid FROM ping_keys AS k LEFT JOIN applications AS a ON a.slug = :slug "
    "WHERE k.key_hash = :key_hash AND k.revoked_at IS NULL")
READ_VERSION = text("SELECT COALESCE(MAX(version), 0) FROM ping_route_version")


class SlugRoute(NamedTuple):
    """What a ping key (by its hash) and a slug name: the key's id if it is an active key, and
    the UUID of the application with that slug, if any; unless the database could not be
    asked (`looked_up` False)."""

    key_hash: str
    slug: str
    ping_key_id: int | None = None
    application_uuid: str | None = None
    looked_up: bool = True


class SlugRoutes:
    """One process's memory of slug ping routes."""

    def __init__(self, app: Flask, db_breaker: Breaker) -> None:
        self.app = app
        self.db_breaker = db_breaker
        self._engine: Engine | None = None
        self._routes: dict[tuple[str, str], SlugRoute] = {}
        self._version: int | None = None
        self._checked_at: dt.datetime | None = None
        self._lock = threading.Lock()

    def resolve(self, key: str, slug: str, now: dt.datetime) -> SlugRoute:
        """The route `key` and `slug` name, remembered or looked up.

        Only routes to an application are remembered: a slug created a moment ago is found
        at its first ping, and a wrong key is looked up each time (rate limits bound that).
        """
        route_key = (hash_key(key), slug)
        # Read, not reserved: the breaker's one probe after an outage is the writer's to take.
        reachable = self.db_breaker.opened_at is None
        if reachable:
            reachable = self._forget_if_changed(now)
        route = self._routes.get(route_key)
        if route is not None:
            return route
        route = self._look_up(*route_key) if reachable else None
        if route is None:
            return SlugRoute(*route_key, looked_up=False)
        if route.application_uuid is not None:
            if len(self._routes) >= MAX_ROUTES:
                self._routes.clear()
            self._routes[route_key] = route
        return route

    def route_to_application(self, key: str, slug: str, now: dt.datetime) -> SlugRoute:
        """resolve(), refusing a route to no application: 404 alike for a wrong key and an
        unknown slug, so a key's guesser learns nothing about slugs."""
        route = self.resolve(key, slug, now)
        if route.looked_up and route.application_uuid is None:
            raise SlugPingNotFound()
        return route

    def _forget_if_changed(self, now: dt.datetime) -> bool:
        """Read the route counter if it is due; forget every route if it moved. False when
        the database could not be reached."""
        checked_at = self._checked_at
        if checked_at is not None and checked_at <= now < checked_at + CHECK_INTERVAL:
            return True
        # One reader per process; the others go on with what is known meanwhile.
        if not self._lock.acquire(blocking=False):
            return True
        try:
            if checked_at is not self._checked_at:
                return True
            try:
                version = self._query(READ_VERSION, {})[0][0]
            except Exception as error:
                if not is_connection_error(error):
                    raise
                self.db_breaker.record_failure(error)
                return False
            if version != self._version:
                self._routes.clear()
                self._version = version
            self._checked_at = now
            return True
        finally:
            self._lock.release()

    def _look_up(self, key_hash: str, slug: str) -> SlugRoute | None:
        """The route from the database; None when it cannot be reached."""
        try:
            rows = self._query(LOOK_UP, {"key_hash": key_hash, "slug": slug})
        except Exception as error:
            if not is_connection_error(error):
                raise
            self.db_breaker.record_failure(error)
            return None
        return SlugRoute(key_hash, slug, *rows[0]) if rows else SlugRoute(key_hash, slug)

    def _query(self, statement, parameters) -> list:
        if self._engine is None:
            with self.app.app_context():
                self._engine = db.engine
        with self._engine.connect() as connection:
            return list(connection.execute(statement, parameters))


def accept_slug_ping(writer: HeartbeatWriter, route: SlugRoute, signal: Signal) -> None:
    """Hand a slug ping to the writer: for its application or, when the database could not be
    asked which one that is, to the spool by its key (hashed) and slug."""
    if route.looked_up:
        writer.accept(route.application_uuid, signal)
    else:
        writer.spool_heartbeat(None, signal, ping_key_hash=route.key_hash, slug=route.slug)


def spooled_route_uuid(key_hash: str, slug: str) -> str | None:
    """For replay: the UUID of the application a spooled slug ping names, or None."""
    rows = db.session.execute(LOOK_UP, {"key_hash": key_hash, "slug": slug}).all()
    return rows[0][1] if rows else None
