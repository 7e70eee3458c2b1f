"""Console: channels — a form per kind, send a test and see its outcome, the breaker's state.
Calls channels.py as the API does and validates with ChannelInSchema."""
from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

import channels
from alert_schemas import ChannelInSchema, ChannelOutSchema
from console.access import console_blueprint, now, page_context, refuse_read_only
from console.forms import Errors, attempt, load, words
from database import db
from delivery import channel_breaker_name
from models import Channel
from runtime import current_runtime
from transports import CHANNEL_KINDS

channels_bp = console_blueprint("console_channels", "/channels")

# The fields each kind's form shows (the schema decides what is valid).
KIND_FIELDS = {"webhook": ("url", "headers", "secret"), "slack": ("url",),
               "email": ("addresses",), "pagerduty": ("url", "routing_key"), "apprise": ("url",)}
# Kinds whose URL is a secret, shown masked: left empty on an edit, the stored one stays.
SECRET_URL_KINDS = ("slack", "apprise")


def breaker_states() -> dict[str, dict[str, Any]]:
    """Each channel breaker's state by breaker name (closed when never used)."""
    return {entry["name"]: entry for entry in current_runtime().breakers.snapshot()}


def breaker_of(channel: Channel, states: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return states.get(channel_breaker_name(channel.id),
                      {"state": "closed", "failure_count": 0, "opened_at": None})


def headers_text(text: str) -> dict[str, str] | None:
    """`Name: value` lines as a dict of headers."""
    headers = {}
    for line in text.splitlines():
        if line.strip():
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
    return headers or None


def schema_input(form: MultiDict, kind: str, editing: bool) -> dict[str, Any]:
    """The form as the JSON body the API's ChannelInSchema reads. On an edit, a secret or
    header left empty keeps what is stored (the page never shows them)."""
    data: dict[str, Any] = {"name": form.get("name", ""), "is_operator": "is_operator" in form}
    if not editing:
        data["kind"] = kind
    fields = KIND_FIELDS.get(kind, ())
    if "url" in fields:
        data["url"] = form.get("url", "").strip() or None
    if "headers" in fields and (form.get("headers", "").strip() or not editing):
        data["headers"] = headers_text(form.get("headers", ""))
    if "secret" in fields and (form.get("secret", "").strip() or not editing):
        data["secret"] = form.get("secret", "").strip() or None
    if "routing_key" in fields and (form.get("routing_key", "").strip() or not editing):
        data["routing_key"] = form.get("routing_key", "").strip() or None
    if "addresses" in fields:
        data["addresses"] = words(form.get("addresses", "")) or None
    return data


def _page(channel: Channel | None, kind: str, values: dict[str, Any], errors: Errors,
          status: int = 200, test_result: dict[str, Any] | None = None):
    states = breaker_states()
    shown = ChannelOutSchema().dump(channel) if channel is not None else None
    page = render_template(
        "console/channel.html", channel=channel, shown=shown, kind=kind, values=values,
        errors=errors, kind_fields=KIND_FIELDS.get(kind, ()), kinds=CHANNEL_KINDS,
        breaker=breaker_of(channel, states) if channel is not None else None,
        test_result=test_result, **page_context())
    db.session.rollback()
    return page, status


@channels_bp.get("")
def index():
    states = breaker_states()
    listed = channels.list_channels()
    page = render_template("console/channels.html", channels=listed, kinds=CHANNEL_KINDS,
                           breakers={channel.id: breaker_of(channel, states) for channel in listed},
                           shown={channel.id: ChannelOutSchema().dump(channel)
                                  for channel in listed}, live=True, **page_context())
    db.session.rollback()
    return page


@channels_bp.get("/new")
def new():
    refuse_read_only()
    kind = request.args.get("kind", "webhook")
    kind = kind if kind in CHANNEL_KINDS else "webhook"
    return _page(None, kind, {}, {})


@channels_bp.post("/new")
def create():
    kind = request.form.get("kind", "")
    fields, errors = load(ChannelInSchema(), schema_input(request.form, kind, editing=False))
    if not errors:
        channel, errors = attempt(lambda: channels.create_channel(fields, now()))
    if errors:
        db.session.rollback()
        return _page(None, kind if kind in CHANNEL_KINDS else "webhook", request.form, errors,
                     422)
    flash(f"Channel {channel.name} created.")
    return redirect(url_for("console_channels.show", channel_id=channel.id))


@channels_bp.get("/<int:channel_id>")
def show(channel_id: int):
    channel = channels.get_channel(channel_id)
    return _page(channel, channel.kind, _values(channel), {})


def _values(channel: Channel) -> dict[str, Any]:
    shown = ChannelOutSchema().dump(channel)
    return {"name": channel.name,
            "url": shown["url"] if channel.kind not in SECRET_URL_KINDS else "",
            "addresses": " ".join(channel.addresses or []), "is_operator": channel.is_operator}


@channels_bp.post("/<int:channel_id>")
def update(channel_id: int):
    channel = channels.get_channel(channel_id)
    data = schema_input(request.form, channel.kind, editing=True)
    if channel.kind in SECRET_URL_KINDS and not request.form.get("url", "").strip():
        data.pop("url")  # a secret URL: left empty, the stored one stays
    fields, errors = load(ChannelInSchema(partial=True), data)
    if not errors:
        _, errors = attempt(lambda: channels.update_channel(channel_id, fields, now()))
    if errors:
        db.session.rollback()
        return _page(channels.get_channel(channel_id), channel.kind, request.form, errors, 422)
    flash("Channel saved.")
    return redirect(url_for("console_channels.show", channel_id=channel_id))


@channels_bp.post("/<int:channel_id>/test")
def send_test(channel_id: int):
    """Send a test alert now; the page shows what happened."""
    result = channels.send_test_alert(channel_id)
    channel = channels.get_channel(channel_id)
    return _page(channel, channel.kind, _values(channel), {}, test_result=result)


@channels_bp.post("/<int:channel_id>/delete")
def delete(channel_id: int):
    name = channels.get_channel(channel_id).name
    channels.delete_channel(channel_id)
    flash(f"Channel {name} deleted.")
    return redirect(url_for("console_channels.index"))
