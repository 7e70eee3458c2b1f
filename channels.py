"""Managing alert channels: create, change, list, delete, send a test alert."""
from __future__ import annotations

import datetime as dt
from typing import Any

from marshmallow import ValidationError, validate
from sqlalchemy import select

from config import Settings
from database import db
from exceptions import ChannelNotFound, ValidationFailed
from models import Channel, new_uuid
from monitoring.error_tracking import record_error
from outbox import build_payload
from runtime import current_runtime
from transports import Destination
from transports.apprise_url import apprise_service, check_targets
from utils.ssrf_guard import ForbiddenTarget, check_webhook_url


def get_channel(channel_id: int) -> Channel:
    channel = db.session.get(Channel, channel_id)
    if channel is None:
        raise ChannelNotFound(channel_id)
    return channel


def list_channels() -> list[Channel]:
    return list(db.session.execute(select(Channel).order_by(Channel.id)).scalars())


HTTP_URL = validate.URL(schemes={"http", "https"}, require_tld=False)
NEEDS_URL = ("webhook", "slack", "apprise")


def _check_complete(channel: Channel) -> None:
    """Refuse (422) a channel its kind cannot deliver to, or one the SSRF guard refuses."""
    if channel.kind in NEEDS_URL and not channel.url:
        raise ValidationFailed({"url": [f"A {channel.kind} channel needs a url."]})
    if channel.kind == "pagerduty" and not channel.secret:
        raise ValidationFailed({"routing_key": ["A pagerduty channel needs a routing_key."]})
    if channel.kind == "email" and not channel.addresses:
        raise ValidationFailed({"addresses": ["An email channel needs at least one address."]})
    if channel.url and channel.kind != "apprise":
        try:
            HTTP_URL(channel.url)
        except ValidationError as error:
            raise ValidationFailed({"url": error.messages})
    refused = refused_target(channel, current_runtime().settings)
    if refused:
        raise ValidationFailed({"url": [refused]})


def refused_target(channel: Channel, settings: Settings) -> str | None:
    """Why the settings refuse this channel's target (SSRF guard, §7), or None."""
    service = apprise_service(channel.url) if channel.kind == "apprise" and channel.url else None
    if channel.kind == "apprise" and service is None:
        return "Not an Apprise URL Apprise can use."
    if settings.ALLOW_PRIVATE_WEBHOOK_TARGETS or not channel.url:
        return None
    try:
        if service is not None:
            check_targets(service)
        else:
            check_webhook_url(channel.url)
    except ForbiddenTarget as refused:
        return (f"Refused: {refused}. Alerts only go to public addresses unless "
                "ALLOW_PRIVATE_WEBHOOK_TARGETS is set.")
    return None


def create_channel(fields: dict[str, Any], now: dt.datetime) -> Channel:
    channel = Channel(created_at=now, updated_at=now, **{"is_operator": False, **fields})
    _check_complete(channel)
    db.session.add(channel)
    db.session.commit()
    return channel


def update_channel(channel_id: int, fields: dict[str, Any], now: dt.datetime) -> Channel:
    channel = get_channel(channel_id)
    for name, value in fields.items():
        setattr(channel, name, value)
    channel.updated_at = now
    _check_complete(channel)
    db.session.commit()
    return channel


def delete_channel(channel_id: int) -> None:
    db.session.delete(get_channel(channel_id))
    db.session.commit()


def channels_by_ids(channel_ids: list[int]) -> list[Channel]:
    """The channels with these ids, or a 422 naming the unknown ones."""
    wanted = list(dict.fromkeys(channel_ids))
    found = {channel.id: channel for channel in db.session.execute(
        select(Channel).where(Channel.id.in_(wanted))).scalars()}
    missing = [channel_id for channel_id in wanted if channel_id not in found]
    if missing:
        raise ValidationFailed({"channels": [f"Unknown channel ids: {missing}"]})
    return [found[channel_id] for channel_id in wanted]


def send_test_alert(channel_id: int) -> dict[str, Any]:
    """Send a test alert now, outside the queue and its breaker, and report what happened."""
    channel = get_channel(channel_id)
    runtime = current_runtime()
    alert_uuid = new_uuid()
    payload = {**build_payload("channel.test", alert_uuid, None, None, runtime.clock.now()),
               "channel": {"id": channel.id, "name": channel.name}}
    attempt = runtime.transports.attempt(Destination.of(channel), alert_uuid, payload)
    if attempt.unexpected is not None:
        record_error(attempt.unexpected, 500)
    return {"delivered": attempt.delivered, "outcome": attempt.outcome,
            "http_status": attempt.http_status, "error": attempt.error,
            "duration_ms": int(attempt.duration_seconds * 1000)}
