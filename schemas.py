"""Marshmallow schemas: the shared fields and checks (time zones, cron, names, pages), and the
schemas of heartbeats and applications. Channels and alerts: alert_schemas.py; incidents,
acknowledgements and maintenance: incident_schemas.py; errors and health:
operations_schemas.py; Healthchecks' API: healthchecks_schemas.py."""
from __future__ import annotations

import datetime as dt
import json
import unicodedata

from flask import has_app_context, request
from marshmallow import (
    Schema,
    ValidationError,
    fields,
    pre_load,
    validate,
    validates_schema,
)

import maintenance
from dependencies import depends_on_uuid
from ingest.signals import kind_for_exit_code
from models import HEARTBEAT_KINDS, STATUSES
from runtime import current_runtime
from schedule import InvalidSchedule, check_cron, check_timezone
from utils.clock import utc_iso

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
