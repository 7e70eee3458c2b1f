"""Schemas of incident response: incidents, acknowledgements, maintenance windows and
snoozes."""
from __future__ import annotations

import datetime as dt

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

import maintenance
from models import INCIDENT_STATES
from runtime import current_runtime
from schemas import (
    TAG_PATTERN,
    InputSchema,
    PageQuerySchema,
    UTCDateTime,
    page_schema,
    validate_cron,
    validate_timezone,
)
from utils.clock import utc_iso


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


IncidentPageSchema = page_schema(IncidentOutSchema, "IncidentPage")
MaintenanceWindowPageSchema = page_schema(MaintenanceWindowOutSchema, "MaintenanceWindowPage")
