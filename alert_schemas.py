"""Schemas of channels (each kind's settings, secrets never shown), their test sends, and
alerts with their delivery attempts."""
from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate

from models import ALERT_STATES
from monitoring.scrubbing import scrub_text
from schemas import InputSchema, Name, PageQuerySchema, UTCDateTime, page_schema
from transports import CHANNEL_KINDS
from transports.apprise_url import private_url
from utils.webhook_headers import header_problem


def _validate_headers(headers: dict) -> None:
    problems = {name: [problem] for name, value in headers.items()
                if (problem := header_problem(name, value)) is not None}
    lowered = [name.lower() for name in headers]
    for name in headers:
        if lowered.count(name.lower()) > 1 and name not in problems:
            problems[name] = ["Given twice (header names ignore case)."]
    if problems:
        raise ValidationError(problems)


class ChannelInSchema(InputSchema):
    name = Name(required=True, validate=validate.Length(min=1, max=200))
    kind = fields.String(required=True, validate=validate.OneOf(CHANNEL_KINDS))
    # An http(s) URL, or for `apprise` an Apprise URL (checked per kind by channels.py).
    url = fields.String(allow_none=True, validate=validate.Length(max=2000))
    headers = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=100)),
                          values=fields.String(validate=validate.Length(max=1000)),
                          validate=[validate.Length(max=20), _validate_headers],
                          allow_none=True)
    secret = fields.String(load_only=True, allow_none=True, validate=validate.Length(min=8, max=200))
    addresses = fields.List(fields.Email(validate=validate.Length(max=254)), allow_none=True,
                            validate=validate.Length(max=20))
    routing_key = fields.String(load_only=True, allow_none=True,
                                validate=validate.Length(min=8, max=200),
                                metadata={"description": "pagerduty: the Events API v2 "
                                                         "integration key; never returned."})
    is_operator = fields.Boolean()

    @post_load
    def _routing_key_is_the_secret(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if "routing_key" in data:
            data["secret"] = data.pop("routing_key")
        return data


class ChannelOutSchema(Schema):
    id = fields.Integer()
    uuid = fields.String(metadata={"description": "Its id in the Healthchecks-compatible API."})
    name = fields.String()
    kind = fields.String()
    url = fields.Method("_url", allow_none=True)
    headers = fields.Method("_headers", allow_none=True)
    has_secret = fields.Method("_has_secret")
    addresses = fields.List(fields.String(), allow_none=True)
    is_operator = fields.Boolean()
    created_at = UTCDateTime()
    updated_at = UTCDateTime()

    def _url(self, channel) -> str | None:
        # A Slack URL is a secret as a whole; a webhook's may hold a password or a token.
        if channel.kind == "slack":
            return mask_url(channel.url)
        if channel.kind == "apprise":  # its tokens sit anywhere in the URL: Apprise masks them
            return private_url(channel.url)
        return scrub_text(channel.url) if channel.url else channel.url

    def _headers(self, channel) -> dict | None:
        # Header values often carry tokens: names are shown, values never.
        return {name: "********" for name in channel.headers} if channel.headers else None

    def _has_secret(self, channel) -> bool:
        return bool(channel.secret)


def mask_url(url: str | None) -> str | None:
    """A Slack webhook URL is itself a secret: keep the host and the last four characters."""
    if not url:
        return url
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}/…{url[-4:]}"


class ChannelTestResultSchema(Schema):
    delivered = fields.Boolean()
    outcome = fields.String()
    http_status = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    duration_ms = fields.Integer()


class DeliveryAttemptOutSchema(Schema):
    attempted_at = UTCDateTime()
    outcome = fields.String()
    http_status = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    duration_ms = fields.Integer()


class AlertOutSchema(Schema):
    id = fields.Integer()
    uuid = fields.String()
    channel_id = fields.Integer()
    event = fields.String()
    state = fields.String(validate=validate.OneOf(ALERT_STATES))
    attempt_count = fields.Integer()
    next_attempt_at = UTCDateTime()
    created_at = UTCDateTime()
    expires_at = UTCDateTime()
    delivered_at = UTCDateTime(allow_none=True)
    last_error = fields.String(allow_none=True)
    payload = fields.Dict()


class AlertDetailSchema(AlertOutSchema):
    attempts = fields.List(fields.Nested(DeliveryAttemptOutSchema))


class AlertListQuerySchema(PageQuerySchema):
    state = fields.String(validate=validate.OneOf(ALERT_STATES))


ChannelListSchema = Schema.from_dict({"items": fields.List(fields.Nested(ChannelOutSchema))},
                                     name="ChannelList")
AlertPageSchema = page_schema(AlertOutSchema, "AlertPage")
