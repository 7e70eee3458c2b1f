"""Marshmallow schemas: they validate every request body and describe every response."""
from __future__ import annotations

import datetime as dt
import json
import zoneinfo

from croniter import croniter
from flask import url_for
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from config import runtime
from models import HEARTBEAT_KINDS, STATUSES
from utils.clock import utc_iso

MAX_METADATA_BYTES = 8 * 1024
ONE_YEAR_SECONDS = 366 * 86400
TAG_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class UTCDateTime(fields.DateTime):
    """ISO 8601 with a Z suffix."""

    def _serialize(self, value, attr, obj, **kwargs):
        return utc_iso(value)


def _validate_timezone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError("Unknown IANA time zone.")


def _validate_cron(expression: str) -> None:
    if not croniter.is_valid(expression):
        raise ValidationError("Not a valid cron expression.")


def _validate_metadata_size(value: dict) -> None:
    if len(json.dumps(value, separators=(",", ":"))) > MAX_METADATA_BYTES:
        raise ValidationError(f"Must be at most {MAX_METADATA_BYTES} bytes when serialized.")


class HeartbeatInSchema(Schema):
    status = fields.String(load_default="ok", validate=validate.OneOf(HEARTBEAT_KINDS))
    message = fields.String(load_default="", validate=validate.Length(max=10000))
    duration_ms = fields.Integer(strict=True, validate=validate.Range(min=0, max=2**31 - 1))
    exit_code = fields.Integer(strict=True, validate=validate.Range(min=0, max=255))
    metadata = fields.Dict(keys=fields.String(validate=validate.Length(max=200)),
                           validate=_validate_metadata_size)


class HeartbeatOutSchema(Schema):
    uuid = fields.String()
    application_uuid = fields.Method("_application_uuid")
    kind = fields.String()
    exit_code = fields.Integer(allow_none=True)
    message = fields.String()
    duration_ms = fields.Integer(allow_none=True)
    metadata = fields.Dict(attribute="metadata_json", allow_none=True)
    rid = fields.String(allow_none=True)
    source = fields.String()
    received_at = UTCDateTime()

    def _application_uuid(self, heartbeat) -> str:
        return heartbeat.application.uuid if heartbeat.application_id else None


class ApplicationInSchema(Schema):
    uuid = fields.UUID(load_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(validate=validate.Length(max=2000))
    tags = fields.List(fields.String(validate=validate.Regexp(TAG_PATTERN)),
                       validate=validate.Length(max=50))
    period_seconds = fields.Integer(strict=True, allow_none=True,
                                    validate=validate.Range(min=1, max=ONE_YEAR_SECONDS))
    cron = fields.String(allow_none=True,
                         validate=[validate.Length(min=1, max=200), _validate_cron])
    timezone = fields.String(validate=[validate.Length(max=64), _validate_timezone])
    grace_seconds = fields.Integer(strict=True,
                                   validate=validate.Range(min=0, max=ONE_YEAR_SECONDS))
    failure_threshold = fields.Integer(strict=True, validate=validate.Range(min=1, max=1000))
    channels = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1)),
                           validate=validate.Length(max=100))

    @validates_schema
    def _one_schedule(self, data, **kwargs):
        if data.get("period_seconds") is not None and data.get("cron") is not None:
            raise ValidationError("Give either period_seconds or cron, not both.", "cron")


class ApplicationOutSchema(Schema):
    uuid = fields.String()
    name = fields.String()
    description = fields.String()
    tags = fields.List(fields.String())
    period_seconds = fields.Integer(allow_none=True)
    cron = fields.String(allow_none=True)
    timezone = fields.String()
    grace_seconds = fields.Integer()
    failure_threshold = fields.Integer()
    channels = fields.Method("_channel_ids")
    status = fields.String(validate=validate.OneOf(STATUSES))
    last_heartbeat_at = UTCDateTime(allow_none=True)
    next_deadline_at = UTCDateTime(allow_none=True)
    ping_url = fields.Method("_ping_url")
    created_at = UTCDateTime()
    updated_at = UTCDateTime()

    def _channel_ids(self, application) -> list[int]:
        return sorted(channel.id for channel in getattr(application, "channels", []))

    def _ping_url(self, application) -> str:
        base = runtime().settings.PUBLIC_BASE_URL.rstrip("/")
        if base:
            return f"{base}/ping/{application.uuid}"
        return url_for("ping.ping", uuid=application.uuid, _external=True)


class ApplicationListQuerySchema(Schema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    tag = fields.String(validate=validate.Regexp(TAG_PATTERN))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(validate=validate.Length(max=200))


class PageQuerySchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(validate=validate.Length(max=200))


def page_schema(item_schema: type[Schema], name: str) -> type[Schema]:
    """A response schema for one page of items."""
    return Schema.from_dict({
        "items": fields.List(fields.Nested(item_schema)),
        "next_cursor": fields.String(allow_none=True),
    }, name=name)


ApplicationPageSchema = page_schema(ApplicationOutSchema, "ApplicationPage")
HeartbeatPageSchema = page_schema(HeartbeatOutSchema, "HeartbeatPage")


class ErrorListQuerySchema(Schema):
    error_type = fields.String(validate=validate.Length(min=1, max=200))
    resolved = fields.Boolean()
    since = fields.AwareDateTime(default_timezone=dt.timezone.utc)
    until = fields.AwareDateTime(default_timezone=dt.timezone.utc)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(validate=validate.Length(max=200))
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "csv")))


class ErrorLogOutSchema(Schema):
    id = fields.Integer()
    error_type = fields.String()
    error_message = fields.String()
    status_code = fields.Integer(allow_none=True)
    method = fields.String(allow_none=True)
    path = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    user_agent = fields.String(allow_none=True)
    occurrence_count = fields.Integer()
    timestamp = UTCDateTime(metadata={"description": "When the error first occurred."})
    last_seen_at = UTCDateTime()
    resolved = fields.Boolean()
    resolved_at = UTCDateTime(allow_none=True)


class ErrorLogDetailSchema(ErrorLogOutSchema):
    stack_trace = fields.String()


ErrorLogPageSchema = page_schema(ErrorLogOutSchema, "ErrorLogPage")


class ErrorRateSchema(Schema):
    requests = fields.Integer()
    errors = fields.Integer()
    rate = fields.Float()
    window_seconds = fields.Integer()
    threshold = fields.Float()
    min_requests = fields.Integer()
    high = fields.Boolean()


class ErrorStatsSchema(Schema):
    total = fields.Integer(metadata={"description": "Distinct errors (rows) in the log."})
    occurrences = fields.Integer(metadata={"description": "Occurrences of all of them."})
    unresolved = fields.Integer()
    last_24h = fields.Integer(metadata={"description": "Errors seen in the last 24 hours."})
    by_type = fields.Dict(keys=fields.String(), values=fields.Integer())
    error_rate = fields.Nested(ErrorRateSchema)
    generated_at = UTCDateTime()


class HealthSchema(Schema):
    status = fields.String(validate=validate.OneOf(("ok", "degraded", "down")))
    checked_at = UTCDateTime()
    database = fields.String()
    spool = fields.String()
    error_rate = fields.Nested(ErrorRateSchema, allow_none=True)


class DependencySchema(Schema):
    name = fields.String()
    kind = fields.String()
    healthy = fields.Boolean()
    state = fields.String()
    detail = fields.String(allow_none=True)


class DependenciesSchema(Schema):
    status = fields.String(validate=validate.OneOf(("ok", "degraded")))
    checked_at = UTCDateTime()
    dependencies = fields.List(fields.Nested(DependencySchema))


class ErrorBodySchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Raw(allow_none=True)
    timestamp = fields.String(required=True)
    request_id = fields.String(required=True)


class ErrorEnvelopeSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)
