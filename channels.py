"""Managing alert channels: create, change, list, delete, send a test alert."""
from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sqlalchemy import select

from alert_manager import PermanentDeliveryError, Senders, build_payload
from config import runtime
from database import db
from exceptions import ChannelNotFound, ValidationFailed
from models import Channel, new_uuid
from utils.circuit_breaker import TransientError
from utils.ssrf_guard import ForbiddenTarget, check_webhook_url


def get_channel(channel_id: int) -> Channel:
    channel = db.session.get(Channel, channel_id)
    if channel is None:
        raise ChannelNotFound(channel_id)
    return channel


def list_channels() -> list[Channel]:
    return list(db.session.execute(select(Channel).order_by(Channel.id)).scalars())


def _check_complete(channel: Channel) -> None:
    if channel.kind in ("webhook", "slack") and not channel.url:
        raise ValidationFailed({"url": [f"A {channel.kind} channel needs a url."]})
    if channel.kind in ("webhook", "slack") and \
            not runtime().settings.ALLOW_PRIVATE_WEBHOOK_TARGETS:
        try:
            check_webhook_url(channel.url)
        except ForbiddenTarget as refused:
            raise ValidationFailed({"url": [f"Refused: {refused}. Alerts only go to public "
                                            "addresses unless ALLOW_PRIVATE_WEBHOOK_TARGETS "
                                            "is set."]})
    if channel.kind == "email" and not channel.addresses:
        raise ValidationFailed({"addresses": ["An email channel needs at least one address."]})


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
    state = runtime()
    alert_uuid = new_uuid()
    payload = {**build_payload("channel.test", alert_uuid, None, None, state.clock.now()),
               "channel": {"id": channel.id, "name": channel.name}}
    started = time.perf_counter()
    result: dict[str, Any] = {"delivered": False, "http_status": None, "error": None}
    try:
        result["http_status"] = Senders(state.settings, state.clock).send(
            channel, alert_uuid, payload)
        result.update(delivered=True, outcome="delivered")
    except TransientError as error:
        result.update(outcome="transient_error", error=str(error), http_status=error.http_status)
    except PermanentDeliveryError as error:
        result.update(outcome="permanent_error", error=str(error),
                      http_status=error.http_status)
    result["duration_ms"] = int((time.perf_counter() - started) * 1000)
    return result
