"""API keys: generated once, stored hashed, checked in constant time."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from flask import g, request
from sqlalchemy import select

from database import db
from exceptions import Forbidden, Unauthorized
from models import ApiKey

KEY_SCHEME = "hbm"
READ_METHODS = {"GET", "HEAD", "OPTIONS"}
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


def hash_key(key: str) -> str:
    # Keys are 256-bit random strings, so a fast hash is enough; no salt or stretching needed.
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(name: str, read_only: bool, now: dt.datetime) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext key, which is never stored."""
    prefix, plaintext = new_key(KEY_SCHEME)
    api_key = ApiKey(name=name, prefix=prefix, key_hash=hash_key(plaintext),
                     read_only=read_only, created_at=now)
    db.session.add(api_key)
    db.session.commit()
    return api_key, plaintext


def new_key(scheme: str) -> tuple[str, str]:
    """(prefix, key): a key `<scheme>_<prefix>_<secret>` whose prefix names it in listings."""
    prefix = secrets.token_hex(4)
    return prefix, f"{scheme}_{prefix}_{secrets.token_urlsafe(32)}"


def key_prefix(key: str, scheme: str = KEY_SCHEME) -> str:
    """The public prefix of `<scheme>_<prefix>_<secret>` (it names the key), or "" if not one."""
    parts = key.split("_", 2)
    return parts[1] if len(parts) >= 2 and parts[0] == scheme else ""


def list_api_keys() -> list[ApiKey]:
    return list(db.session.execute(select(ApiKey).order_by(ApiKey.id)).scalars())


def revoke_api_key(prefix: str, now: dt.datetime) -> ApiKey | None:
    """Revoke the active key with this prefix (`hbm_<prefix>_…` accepted too)."""
    prefix = key_prefix(prefix) or prefix
    api_key = db.session.execute(select(ApiKey).where(
        ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))).scalar_one_or_none()
    if api_key is not None:
        api_key.revoked_at = now
        db.session.commit()
    return api_key


def presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("X-Api-Key", "").strip() or None


def authenticate(key: str | None) -> ApiKey:
    """The active ApiKey matching `key`, or Unauthorized."""
    if not key:
        raise Unauthorized("Send the key as 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'.")
    prefix = key_prefix(key)
    api_key = db.session.execute(
        select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
    ).scalar_one_or_none() if prefix else None
    expected = api_key.key_hash if api_key else _DUMMY_HASH
    if not hmac.compare_digest(expected, hash_key(key)) or api_key is None:
        raise Unauthorized("The API key is not valid.")
    return api_key


def require_api_key(key: str | None = None, *, read_only_allowed: bool | None = None) -> ApiKey:
    """Before-request guard of the management API: the presented key (or `key`) must be valid,
    and a read-only key may only read (or, when given, only where `read_only_allowed`)."""
    api_key = authenticate(key or presented_key())
    if read_only_allowed is None:
        read_only_allowed = request.method in READ_METHODS
    if api_key.read_only and not read_only_allowed:
        raise Forbidden("This API key is read-only.")
    g.api_key_id = api_key.id
    return api_key
