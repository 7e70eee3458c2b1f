"""Schemas of what the service says about itself: the error log, error rate, health, its
dependencies, and the error envelope every failing request answers with."""
from __future__ import annotations

import datetime as dt

from marshmallow import Schema, fields, validate

from schemas import InputSchema, UTCDateTime, page_schema


class ErrorListQuerySchema(InputSchema):
    error_type = fields.String(validate=validate.Length(min=1, max=200))
    resolved = fields.Boolean()
    since = fields.AwareDateTime(default_timezone=dt.timezone.utc)
    until = fields.AwareDateTime(default_timezone=dt.timezone.utc)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(metadata={"description": "next_cursor of the previous page."})
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
    reasons = fields.List(fields.String(), metadata={"description": "Why not ok, if not."})
    checked_at = UTCDateTime()
    database = fields.String()
    spool = fields.String()
    error_rate = fields.Nested(ErrorRateSchema, allow_none=True)


class SpoolDepthSchema(Schema):
    heartbeats_bytes = fields.Integer()
    errors_bytes = fields.Integer()


class DependencySchema(Schema):
    name = fields.String()
    kind = fields.String()
    healthy = fields.Boolean()
    state = fields.String()
    detail = fields.String(allow_none=True)
    latency_ms = fields.Float(metadata={"description": "Database only: time to answer a probe."})
    depth = fields.Nested(SpoolDepthSchema, metadata={"description": "Spool only: bytes kept."})
    failure_count = fields.Integer(metadata={"description": "Breakers only."})
    opened_at = fields.String(allow_none=True, metadata={"description": "Breakers only."})
    channel_id = fields.Integer(metadata={"description": "A channel the current settings would "
                                                         "refuse (kind `channel`) only."})


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
