"""Ping keys: the secret of slug ping URLs (`/ping/<ping-key>/<slug>`), stored hashed.

A key is `hbp_<prefix>_<secret>`; the prefix names it in listings. A Healthchecks project's own
ping key can be adopted as it is, so that its slug URLs keep working once its hostname points
here. Keys are looked up by their hash: they are long random strings, so the hash alone finds
them and reveals nothing.
"""
from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import or_, select

from auth import hash_key, key_prefix, new_key
from database import db
from exceptions import Conflict, ValidationFailed
from models import PingKey
from utils.request_input import canonical_uuid

PING_KEY_SCHEME = "hbp"
# Healthchecks' ping keys are 22 URL-safe characters; a key must never read as a UUID.
ADOPTED_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,128}")
ADOPTED_PREFIX_LENGTH = 6


def create_ping_key(name: str, now: dt.datetime, key: str | None = None) -> tuple[PingKey, str]:
    """Create a ping key, or adopt `key`; returns the row and the key, which is never stored."""
    if key is None:
        prefix, key = new_key(PING_KEY_SCHEME)
    else:
        _check_adoptable(key)
        prefix = key[:ADOPTED_PREFIX_LENGTH]
    ping_key = PingKey(name=name, prefix=prefix, key_hash=hash_key(key), created_at=now)
    db.session.add(ping_key)
    db.session.commit()
    return ping_key, key


def _check_adoptable(key: str) -> None:
    if not ADOPTED_KEY_PATTERN.fullmatch(key) or canonical_uuid(key) is not None:
        raise ValidationFailed({"key": ["16 to 128 letters, digits, '-' or '_', not a UUID."]})
    known = db.session.execute(select(PingKey.id).where(
        (PingKey.key_hash == hash_key(key)) | (PingKey.prefix == key[:ADOPTED_PREFIX_LENGTH])
    )).first()
    if known is not None:
        raise Conflict("This key, or one starting like it, is already known.")


def list_ping_keys() -> list[PingKey]:
    return list(db.session.execute(select(PingKey).order_by(PingKey.id)).scalars())


def revoke_ping_key(handle: str, now: dt.datetime) -> PingKey | None:
    """Revoke the active key named by `handle`: its prefix as listed, or the whole key."""
    ping_key = db.session.execute(select(PingKey).where(
        or_(PingKey.prefix == handle, PingKey.prefix == key_prefix(handle, PING_KEY_SCHEME),
            PingKey.key_hash == hash_key(handle)),
        PingKey.revoked_at.is_(None))).scalars().first()
    if ping_key is not None:
        ping_key.revoked_at = now
        db.session.commit()
    return ping_key


def active_ping_key_id(key: str) -> int | None:
    """The id of the active ping key `key`, or None."""
    return db.session.execute(select(PingKey.id).where(
        PingKey.key_hash == hash_key(key), PingKey.revoked_at.is_(None))).scalar_one_or_none()


def display_key(ping_key: PingKey) -> str:
    """How listings show a key: its prefix, never its secret."""
    if len(ping_key.prefix) != ADOPTED_PREFIX_LENGTH:
        return f"{PING_KEY_SCHEME}_{ping_key.prefix}_…"
    return f"{ping_key.prefix}…"
