"""Rows made directly in the database, for what the API cannot create (yet) or would be slow."""
from __future__ import annotations

import datetime as dt

from database import db
from models import Channel, ErrorLog, RequestCount
from monitoring.error_rate import bucket_start


def make_error(app, now: dt.datetime, error_type: str = "RuntimeError", *,
               message: str = "it broke", resolved_at: dt.datetime | None = None,
               count: int = 1, fingerprint: str | None = None) -> int:
    """An ErrorLog row first and last seen at `now`; returns its id."""
    with app.app_context():
        row = ErrorLog(fingerprint=fingerprint or f"{error_type}-{now.isoformat()}-{message}",
                       error_type=error_type, error_message=message,
                       stack_trace=f"Traceback (most recent call last):\n{error_type}: {message}",
                       request_id="req_test", path="/boom", method="GET", status_code=500,
                       occurrence_count=count, timestamp=now, last_seen_at=now,
                       resolved=resolved_at is not None, resolved_at=resolved_at)
        db.session.add(row)
        db.session.commit()
        row_id = row.id
        db.session.remove()
    return row_id


def make_channel(app, name: str, *, is_operator: bool, kind: str = "webhook") -> int:
    with app.app_context():
        now = app.extensions["hbmon"].clock.now()
        channel = Channel(name=name, kind=kind, url="https://hooks.example.com/x",
                          secret="whsec_channel_secret_value", is_operator=is_operator,
                          created_at=now, updated_at=now)
        db.session.add(channel)
        db.session.commit()
        channel_id = channel.id
        db.session.remove()
    return channel_id


def add_request_counts(app, now: dt.datetime, requests: int, errors: int,
                       source: str = "other-worker") -> None:
    """Traffic counted by another process in the bucket holding `now`."""
    with app.app_context():
        db.session.add(RequestCount(bucket_start=bucket_start(now), source=source,
                                    requests=requests, errors=errors))
        db.session.commit()
        db.session.remove()
