"""Marshmallow schemas: they validate every request body and describe every response."""
from __future__ import annotations

import datetime as dt
import json
import unicodedata
from typing import Any

from flask import has_app_context, request
from marshmallow import (
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates_schema,
)

import maintenance
from dependencies import depends_on_uuid
from ingest.signals import kind_for_exit_code
from models import ALERT_STATES, HEARTBEAT_KINDS, INCIDENT_STATES, STATUSES
from monitoring.scrubbing import scrub_text
from runtime import current_runtime
from schedule import InvalidSchedule, check_cron, check_timezone
from transports import CHANNEL_KINDS
from transports.apprise_url import private_url
from utils.clock import utc_iso
from utils.webhook_headers import header_problem

MAX_METADATA_BYTES = 8 * 1024
ONE_YEAR_SECONDS = 366 * 86400
# Any word without blanks or control characters: Healthchecks' tags (space-separated) carry over.
TAG_PATTERN = r"^[^\s\x00-\x1f\x7f]{1,64}$"
SLUG_PATTERN = r"^[a-z0-9_-]+$"
SLUG_MAX_LENGTH = 100


class UTCDateTime(fields.DateTime):
    """ISO 8601 with a Z suffix."""

    def _serialize(self, value, attr, obj, **kwargs):
        return utc_iso(value)


def validate_timezone(name: str) -> None:
    try:
        check_timezone(name)
    except InvalidSchedule as refused:
        raise ValidationError(str(refused))


def validate_cron(expression: str) -> None:
    # Outside a request (schemas used on their own) the system clock serves.
    now = current_runtime().clock.now() if has_app_context() else dt.datetime.now(dt.timezone.utc)
    try:  # a schedule that never fires again would have no deadline to judge
        check_cron(expression, now)
    except InvalidSchedule as refused:
        raise ValidationError(str(refused))


# Characters that change how the text around them is shown (bidirectional overrides and
# isolates, marks) or that no name needs (C0 and C1 controls, line and paragraph separators).
BIDI_CONTROLS = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                    "\u2066\u2067\u2068\u2069")


def _spoofing_character(text: str) -> str | None:
    for character in text:
        if character in BIDI_CONTROLS or unicodedata.category(character) in ("Cc", "Zl", "Zp"):
            return character
    return None


class Name(fields.String):
    """A display name: NFC-normalized, without control or bidirectional-override characters
    (they can make a name in the console read as another)."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = unicodedata.normalize("NFC", super()._deserialize(value, attr, data, **kwargs))
        refused = _spoofing_character(text)
        if refused is not None:
            raise ValidationError(f"Names may not hold control or bidirectional formatting "
                                  f"characters (found U+{ord(refused):04X}).")
        return text


def _validate_metadata_size(value: dict) -> None:
    if len(json.dumps(value, separators=(",", ":"))) > MAX_METADATA_BYTES:
        raise ValidationError(f"Must be at most {MAX_METADATA_BYTES} bytes when serialized.")


def _unstorable_text(value) -> bool:
    """True if a string anywhere in `value` holds NUL or a lone surrogate (not storable text)."""
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_unstorable_text(key) or _unstorable_text(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_unstorable_text(item) for item in value)
    return False


class InputSchema(Schema):
    """A schema for what clients send: only text a database can store (no NUL, no lone
    surrogates from JSON escapes like \\ud800)."""

    @pre_load
    def _refuse_unstorable_text(self, data, **kwargs):
        if isinstance(data, dict):
            refused = {str(name): ["Must be Unicode text without NUL (\\u0000) characters "
                                   "or lone surrogates."]
                       for name, value in data.items()
                       if _unstorable_text(name) or _unstorable_text(value)}
            if refused:
                raise ValidationError(refused)
        return data


class HeartbeatInSchema(InputSchema):
    status = fields.String(load_default="ok", validate=validate.OneOf(HEARTBEAT_KINDS))
    message = fields.String(load_default="", validate=validate.Length(max=10000))
    duration_ms = fields.Integer(strict=True, validate=validate.Range(min=0, max=2**31 - 1))
    exit_code = fields.Integer(strict=True, validate=validate.Range(min=0, max=255))
    metadata = fields.Dict(keys=fields.String(validate=validate.Length(max=200)),
                           validate=_validate_metadata_size)

    @pre_load
    def _status_from_exit_code(self, data, **kwargs):
        """Without a status, an exit code says it: 0 is ok, anything else a failure."""
        if isinstance(data, dict) and "status" not in data \
                and type(data.get("exit_code")) is int:
            return {**data, "status": kind_for_exit_code(data["exit_code"])}
        return data

    @validates_schema
    def _exit_code_agrees(self, data, **kwargs):
        exit_code, status = data.get("exit_code"), data.get("status")
        if exit_code is not None and status in ("ok", "fail") \
                and status != kind_for_exit_code(exit_code):
            raise ValidationError(f"Exit code {exit_code} contradicts status {status!r} "
                                  "(0 is ok, anything else a failure).", "exit_code")


class HeartbeatOutSchema(Schema):
    uuid = fields.String()
    application_uuid = fields.String()
    kind = fields.String()
    exit_code = fields.Integer(allow_none=True)
    message = fields.String()
    duration_ms = fields.Integer(allow_none=True)
    metadata = fields.Dict(allow_none=True)
    rid = fields.String(allow_none=True)
    source = fields.String()
    received_at = UTCDateTime()


def slug_field(**kwargs) -> fields.String:
    """A slug: lowercase letters, digits, `-` and `_` (as Healthchecks allows)."""
    return fields.String(validate=[validate.Length(min=1, max=SLUG_MAX_LENGTH),
                                   validate.Regexp(SLUG_PATTERN, error="Only lowercase letters, "
                                                   "digits, '-' and '_'.")], **kwargs)


class EscalationStepSchema(InputSchema):
    after_seconds = fields.Integer(strict=True, required=True,
                                   validate=validate.Range(min=0, max=ONE_YEAR_SECONDS))
    channels = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1)),
                           required=True, validate=validate.Length(min=1, max=100))


def _validate_escalation_order(steps: list[dict]) -> None:
    for index in range(1, len(steps)):
        if steps[index]["after_seconds"] <= steps[index - 1]["after_seconds"]:
            raise ValidationError({index: {"after_seconds": [
                "Each step must come later than the one before."]}})


class ApplicationInSchema(InputSchema):
    uuid = fields.UUID(load_only=True)
    name = Name(required=True, validate=validate.Length(min=1, max=200))
    slug = slug_field(allow_none=True, metadata={
        "description": "Unique; names it in slug ping URLs and badges. null removes it."})
    description = fields.String(validate=validate.Length(max=2000))
    tags = fields.List(fields.String(validate=validate.Regexp(TAG_PATTERN)),
                       validate=validate.Length(max=50))
    period_seconds = fields.Integer(strict=True, allow_none=True,
                                    validate=validate.Range(min=1, max=ONE_YEAR_SECONDS))
    cron = fields.String(allow_none=True,
                         validate=[validate.Length(min=1, max=200), validate_cron])
    timezone = fields.String(validate=[validate.Length(max=64), validate_timezone])
    grace_seconds = fields.Integer(strict=True,
                                   validate=validate.Range(min=0, max=ONE_YEAR_SECONDS))
    failure_threshold = fields.Integer(strict=True, validate=validate.Range(min=1, max=1000))
    channels = fields.List(fields.Integer(strict=True, validate=validate.Range(min=1)),
                           validate=validate.Length(max=100))
    # Incident response (SPEC §8).
    min_duration_seconds = fields.Integer(strict=True, allow_none=True,
                                          validate=validate.Range(min=0, max=ONE_YEAR_SECONDS))
    max_duration_seconds = fields.Integer(strict=True, allow_none=True,
                                          validate=validate.Range(min=1, max=ONE_YEAR_SECONDS))
    reminder_interval_seconds = fields.Integer(
        strict=True, validate=validate.Range(min=0, max=ONE_YEAR_SECONDS),
        metadata={"description": "Remind (application.still_down) this often while an "
                                 "incident is open and unacknowledged; 0 (default) never."})
    escalation = fields.List(fields.Nested(EscalationStepSchema), allow_none=True,
                             validate=[validate.Length(max=10), _validate_escalation_order])
    depends_on = fields.UUID(allow_none=True, metadata={
        "description": "The application this one depends on: while it (or one it depends "
                       "on) has an open incident, this one's down alerts are held."})

    @validates_schema
    def _one_schedule(self, data, **kwargs):
        if data.get("period_seconds") is not None and data.get("cron") is not None:
            raise ValidationError("Give either period_seconds or cron, not both.", "cron")
        minimum, maximum = data.get("min_duration_seconds"), data.get("max_duration_seconds")
        if minimum is not None and maximum is not None and minimum > maximum:
            raise ValidationError("Must not be above max_duration_seconds.",
                                  "min_duration_seconds")


class ApplicationOutSchema(Schema):
    uuid = fields.String()
    name = fields.String()
    slug = fields.String(allow_none=True)
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
    min_duration_seconds = fields.Integer(allow_none=True)
    max_duration_seconds = fields.Integer(allow_none=True)
    reminder_interval_seconds = fields.Integer()
    escalation = fields.List(fields.Nested(EscalationStepSchema), allow_none=True)
    depends_on = fields.Method("_depends_on", metadata={"type": "string", "nullable": True})
    in_maintenance = fields.Method("_in_maintenance", metadata={
        "type": "boolean", "description": "A maintenance window or snooze covers it now."})
    snoozed_until = fields.Method("_snoozed_until", metadata={
        "type": "string", "format": "date-time", "nullable": True})
    created_at = UTCDateTime()
    updated_at = UTCDateTime()

    def _depends_on(self, application) -> str | None:
        return depends_on_uuid(application)

    def _in_maintenance(self, application) -> bool:
        now = current_runtime().clock.now()
        return bool(maintenance.request_windows(now).covering(application))

    def _snoozed_until(self, application) -> str | None:
        now = current_runtime().clock.now()
        return utc_iso(maintenance.request_windows(now).snoozed_until(application))

    def _channel_ids(self, application) -> list[int]:
        return sorted(channel.id for channel in getattr(application, "channels", []))

    def _ping_url(self, application) -> str:
        return f"{public_base_url()}/ping/{application.uuid}"


def public_base_url() -> str:
    """Where clients reach this service: PUBLIC_BASE_URL, else the current request's root."""
    return current_runtime().settings.PUBLIC_BASE_URL.rstrip("/") or request.url_root.rstrip("/")


class ApplicationListQuerySchema(InputSchema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    tag = fields.String(validate=validate.Regexp(TAG_PATTERN))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(metadata={"description": "next_cursor of the previous page."})


class PageQuerySchema(InputSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(metadata={"description": "next_cursor of the previous page."})


def page_schema(item_schema: type[Schema], name: str) -> type[Schema]:
    """A response schema for one page of items."""
    return Schema.from_dict({
        "items": fields.List(fields.Nested(item_schema)),
        "next_cursor": fields.String(allow_none=True),
    }, name=name)


ApplicationPageSchema = page_schema(ApplicationOutSchema, "ApplicationPage")
HeartbeatPageSchema = page_schema(HeartbeatOutSchema, "HeartbeatPage")


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


class IncidentApplicationSchema(Schema):
    uuid = fields.String()
    name = fields.String()
    status = fields.String()


class IncidentOutSchema(Schema):
    id = fields.Integer()
    application = fields.Nested(IncidentApplicationSchema)
    state = fields.String(validate=validate.OneOf(INCIDENT_STATES))
    reason = fields.String(metadata={"description": "missed, failed, too_short or too_long"})
    started_at = UTCDateTime()
    resolved_at = UTCDateTime(allow_none=True)
    resolution = fields.String(allow_none=True,
                               metadata={"description": "recovered or paused"})
    alerted_at = UTCDateTime(allow_none=True, metadata={
        "description": "When its down alert was queued; null while held (a maintenance window "
                       "or a dependency) or if it never went out."})
    in_maintenance = fields.Boolean()
    suppressed_by = fields.String(allow_none=True, metadata={
        "description": "UUID of the application whose open incident held its alert."})
    acknowledged_at = UTCDateTime(allow_none=True)
    acknowledged_by = fields.String(allow_none=True)
    acknowledgement_note = fields.String(allow_none=True)
    escalation_step = fields.Integer(metadata={"description": "Escalation steps sent so far."})
    next_reminder_at = UTCDateTime(allow_none=True)
    next_escalation_at = UTCDateTime(allow_none=True)


class IncidentListQuerySchema(PageQuerySchema):
    state = fields.String(validate=validate.OneOf(INCIDENT_STATES))


class AcknowledgeInSchema(InputSchema):
    note = fields.String(validate=validate.Length(max=2000))


class MaintenanceWindowInSchema(InputSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    starts_at = fields.AwareDateTime(allow_none=True, default_timezone=dt.timezone.utc)
    ends_at = fields.AwareDateTime(allow_none=True, default_timezone=dt.timezone.utc)
    cron = fields.String(allow_none=True,
                         validate=[validate.Length(min=1, max=200), validate_cron])
    timezone = fields.String(validate=[validate.Length(max=64), validate_timezone])
    duration_seconds = fields.Integer(strict=True, allow_none=True,
                                      validate=validate.Range(min=60, max=31 * 86400))
    applications = fields.List(fields.UUID(), validate=validate.Length(max=1000))
    tags = fields.List(fields.String(validate=validate.Regexp(TAG_PATTERN)),
                       validate=validate.Length(max=50))

    @validates_schema
    def _ends_after_start(self, data, **kwargs):
        starts_at, ends_at = data.get("starts_at"), data.get("ends_at")
        if starts_at is not None and ends_at is not None and ends_at <= starts_at:
            raise ValidationError("Must be after starts_at.", "ends_at")


class MaintenanceWindowOutSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    kind = fields.String(metadata={"description": "one_off, recurring or snooze"})
    starts_at = UTCDateTime(allow_none=True)
    ends_at = UTCDateTime(allow_none=True)
    cron = fields.String(allow_none=True)
    timezone = fields.String()
    duration_seconds = fields.Integer(allow_none=True)
    applications = fields.Method("_applications", metadata={
        "type": "array", "items": {"type": "string", "format": "uuid"}})
    tags = fields.List(fields.String())
    active = fields.Method("_active", metadata={"type": "boolean"})
    occurrence_starts_at = fields.Method("_occurrence_starts_at", metadata={
        "type": "string", "format": "date-time", "nullable": True,
        "description": "Start of the occurrence in force, or of the next one."})
    occurrence_ends_at = fields.Method("_occurrence_ends_at", metadata={
        "type": "string", "format": "date-time", "nullable": True})
    created_at = UTCDateTime()
    updated_at = UTCDateTime()

    def _applications(self, window) -> list[str]:
        return [application.uuid for application in window.application_rows]

    def _occurrence(self, window):
        return maintenance.occurrence_now(window, current_runtime().clock.now())

    def _active(self, window) -> bool:
        occurrence = self._occurrence(window)
        return occurrence is not None and occurrence[0] <= current_runtime().clock.now()

    def _occurrence_starts_at(self, window) -> str | None:
        occurrence = self._occurrence(window)
        return utc_iso(occurrence[0]) if occurrence else None

    def _occurrence_ends_at(self, window) -> str | None:
        occurrence = self._occurrence(window)
        return utc_iso(occurrence[1]) if occurrence else None


class MaintenanceWindowListQuerySchema(PageQuerySchema):
    active = fields.Boolean(metadata={"description": "true: only windows in force now."})


class SnoozeInSchema(InputSchema):
    until = fields.AwareDateTime(required=True, default_timezone=dt.timezone.utc)


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
IncidentPageSchema = page_schema(IncidentOutSchema, "IncidentPage")
MaintenanceWindowPageSchema = page_schema(MaintenanceWindowOutSchema, "MaintenanceWindowPage")
AlertPageSchema = page_schema(AlertOutSchema, "AlertPage")
