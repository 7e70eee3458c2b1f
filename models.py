"""Database models: applications, heartbeats, API keys and the error log."""
from __future__ import annotations

import datetime as dt
import uuid as uuid_lib

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from database import UTCDateTime, db

STATUSES = ("new", "up", "late", "down", "paused")
HEARTBEAT_KINDS = ("ok", "fail", "start", "log")


def new_uuid() -> str:
    return str(uuid_lib.uuid4())


class Application(db.Model):
    """A watched job or service, with its schedule and current status."""

    __tablename__ = "applications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, nullable=False, default=new_uuid)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    # Optional, unique: names the application in slug ping URLs and badge URLs.
    slug: Mapped[str | None] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    period_seconds: Mapped[int | None] = mapped_column(Integer)
    cron: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), nullable=False, default="UTC")
    grace_seconds: Mapped[int] = mapped_column(Integer, nullable=False, default=3600)
    failure_threshold: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    consecutive_failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="new", index=True)
    # Healthchecks' options: a paused application ignores pings until resumed by hand; "POST"
    # lets only POST pings count.
    manual_resume: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False,
                                                server_default=false())
    methods: Mapped[str] = mapped_column(String(8), nullable=False, default="", server_default="")
    # Every heartbeat ever stored for it, pruned or not: counted by the database itself, a
    # trigger on inserts into heartbeats (migration 0006), whichever path writes them.
    n_pings: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    last_heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_start_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_start_rid: Mapped[str | None] = mapped_column(String(36))
    next_deadline_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # When the monitor must next look at this application (deadline, deadline + grace, or
    # start + grace); NULL when time cannot change its status. The monitor's only query.
    next_check_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    # Incident response (SPEC §8): run-duration limits, reminders, escalation steps
    # ([{"after_seconds": n, "channels": [ids]}]) and the application this one depends on.
    min_duration_seconds: Mapped[int | None] = mapped_column(Integer)
    max_duration_seconds: Mapped[int | None] = mapped_column(Integer)
    reminder_interval_seconds: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    escalation: Mapped[list | None] = mapped_column(JSON)
    depends_on_id: Mapped[int | None] = mapped_column(
        ForeignKey("applications.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)

    tag_rows: Mapped[list["ApplicationTag"]] = relationship(
        back_populates="application", cascade="all, delete-orphan", lazy="selectin",
        order_by="ApplicationTag.tag")

    @property
    def tags(self) -> list[str]:
        return [row.tag for row in self.tag_rows]

    @tags.setter
    def tags(self, values: list[str]) -> None:
        wanted = list(dict.fromkeys(values))
        self.tag_rows = [ApplicationTag(tag=tag) for tag in wanted]


class ApplicationTag(db.Model):
    __tablename__ = "application_tags"

    application_id: Mapped[int] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)

    application: Mapped[Application] = relationship(back_populates="tag_rows")


class Heartbeat(db.Model):
    """One signal received from an application."""

    __tablename__ = "heartbeats"
    __table_args__ = (
        Index("ix_heartbeats_application_received", "application_id", "received_at", "id"),
    )

    # On PostgreSQL the table is partitioned by day of received_at (heartbeat_partitions.py,
    # migration 0011): its keys there include received_at, the primary key (id, received_at)
    # and the UUID's uniqueness (uuid, received_at); the id is a bigint (SQLite's rowid).
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    # Assigned at ingest, before any write: makes a spool replay idempotent.
    uuid: Mapped[str] = mapped_column(String(36), unique=True, nullable=False, default=new_uuid)
    application_id: Mapped[int] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(String(8), nullable=False)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text, nullable=False, default="")
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    metadata_json: Mapped[dict | None] = mapped_column("metadata", JSON)
    rid: Mapped[str | None] = mapped_column(String(36))
    source: Mapped[str] = mapped_column(String(8), nullable=False, default="ping")
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    method: Mapped[str | None] = mapped_column(String(8))  # of the ping's HTTP request
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)

    application: Mapped[Application] = relationship()


# What ingest writes of a heartbeat (every column but the id), by column name.
HEARTBEAT_COLUMNS = tuple(column.name for column in Heartbeat.__table__.columns
                          if column.name != "id")


class ApiKey(db.Model):
    """A management API key; only a hash of the secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), unique=True, nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    read_only: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class PingKey(db.Model):
    """A key for slug ping URLs (/ping/<key>/<slug>); only a hash of the secret is stored."""

    __tablename__ = "ping_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), unique=True, nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class PingRouteVersion(db.Model):
    """One counter, raised by the database's triggers whenever a slug or a ping key changes
    (migration 0012): slug ping routes a process remembers hold while it stands still."""

    __tablename__ = "ping_route_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)


class StatusChange(db.Model):
    """One change of an application's status, at the time it changed (its creation too).
    Written by the database's triggers on `applications` (migration 0013), whichever path
    changes the status; read by the console's timeline (console/history.py)."""

    __tablename__ = "status_changes"
    __table_args__ = (
        Index("ix_status_changes_application_changed", "application_id", "changed_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    application_id: Mapped[int] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class ErrorLog(db.Model):
    """A server-side error; repeats of one fingerprint raise occurrence_count."""

    __tablename__ = "error_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    error_type: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    error_message: Mapped[str] = mapped_column(Text, nullable=False, default="")
    stack_trace: Mapped[str] = mapped_column(Text, nullable=False, default="")
    request_id: Mapped[str | None] = mapped_column(String(128))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    path: Mapped[str | None] = mapped_column(String(500))
    method: Mapped[str | None] = mapped_column(String(10))
    status_code: Mapped[int | None] = mapped_column(Integer)
    occurrence_count: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    timestamp: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    resolved: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, index=True)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


application_channels = db.Table(
    "application_channels",
    db.Column("application_id", ForeignKey("applications.id", ondelete="CASCADE"),
              primary_key=True),
    db.Column("channel_id", ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True,
              index=True),
)

ALERT_STATES = ("pending", "delivered", "failed", "dead")
ALERT_EVENTS = ("application.down", "application.up", "application.still_down",
                "application.acknowledged", "service.error_rate_high", "channel.test")


class Channel(db.Model):
    """An alert destination: a webhook, a Slack-compatible webhook, or email addresses."""

    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # How the Healthchecks API names the channel (its integrations have UUIDs).
    uuid: Mapped[str] = mapped_column(String(36), unique=True, nullable=False, default=new_uuid)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    url: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict | None] = mapped_column(JSON)
    secret: Mapped[str | None] = mapped_column(String(200))
    addresses: Mapped[list | None] = mapped_column(JSON)
    is_operator: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


Application.channels = relationship(Channel, secondary=application_channels, lazy="selectin",
                                    order_by=Channel.id)


INCIDENT_STATES = ("open", "acknowledged", "resolved")


class Incident(db.Model):
    """A period during which an application was down, and what its channels were told."""

    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_application_started", "application_id", "started_at"),
        # At most one open incident per application, whatever the code above it does.
        Index("uq_incidents_one_open_per_application", "application_id", unique=True,
              postgresql_where=text("resolved_at IS NULL"),
              sqlite_where=text("resolved_at IS NULL")),
        # Only incidents the monitor has to look at again are indexed (a tiny index).
        Index("ix_incidents_next_check_at", "next_check_at", "id",
              postgresql_where=text("next_check_at IS NOT NULL"),
              sqlite_where=text("next_check_at IS NOT NULL")),
        Index("ix_incidents_suppressed_by", "suppressed_by",
              postgresql_where=text("suppressed_by IS NOT NULL"),
              sqlite_where=text("suppressed_by IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), nullable=False)
    reason: Mapped[str] = mapped_column(String(16), nullable=False)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    # "recovered" (a success) or "paused" (an operator paused the application).
    resolution: Mapped[str | None] = mapped_column(String(16))
    # When its down alert was queued; NULL while a maintenance window or a dependency holds it.
    alerted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    in_maintenance: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    suppressed_by: Mapped[str | None] = mapped_column(String(36))
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(300))
    acknowledgement_note: Mapped[str | None] = mapped_column(Text)
    escalation_step: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_reminder_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    next_escalation_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # When the monitor must next look at this incident (a reminder, an escalation step, a held
    # alert to reconsider); NULL when only an event can change what it owes anyone.
    next_check_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    # Loaded on access, never joined: a joined load would lock the application's row too
    # in the monitor's `FOR UPDATE` of incidents.
    application: Mapped[Application] = relationship()

    @property
    def state(self) -> str:
        if self.resolved_at is not None:
            return "resolved"
        return "acknowledged" if self.acknowledged_at is not None else "open"


class Alert(db.Model):
    """One notification for one channel: an outbox row, written with the change it reports."""

    __tablename__ = "alerts"
    # In the claim's order, so a claim reads only the alerts it takes.
    __table_args__ = (Index("ix_alerts_state_next_attempt", "state", "next_attempt_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, nullable=False, default=new_uuid)
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), nullable=False, index=True)
    application_id: Mapped[int | None] = mapped_column(
        ForeignKey("applications.id", ondelete="SET NULL"), index=True)
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), index=True)
    event: Mapped[str] = mapped_column(String(40), nullable=False)
    payload: Mapped[dict] = mapped_column(JSON, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempt_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    # A delivery worker owns the alert until this moment; a crashed worker's claim expires.
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The delivery process holding the claim: once it stops renewing its liveness, the claim is
    # free before the lease runs out (SPEC §6.4a).
    claimed_by: Mapped[str | None] = mapped_column(String(36))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    # Past this moment an undelivered alert is dead (ALERT_MAX_AGE_SECONDS); a retry renews it.
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    channel: Mapped[Channel] = relationship(lazy="joined")


class DeliveryProcess(db.Model):
    """A process delivering alerts, alive while it renews `alive_at` (delivery_liveness.py)."""

    __tablename__ = "delivery_processes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)  # host and pid, for people
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    alive_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class DeliveryAttempt(db.Model):
    """One try at delivering an alert."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(
        ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False, index=True)
    attempted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    outcome: Mapped[str] = mapped_column(String(24), nullable=False)
    http_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class ServiceState(db.Model):
    """Small named facts shared by every process (e.g. when the service was last alive)."""

    __tablename__ = "service_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict] = mapped_column(JSON, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class RequestCount(db.Model):
    """Requests and 5xx answers served in one time bucket by one process; summed for the rate."""

    __tablename__ = "request_counts"

    bucket_start: Mapped[dt.datetime] = mapped_column(UTCDateTime, primary_key=True)
    # One row per serving process and bucket, so workers never contend for a row.
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    errors: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


MAINTENANCE_KINDS = ("one_off", "recurring", "snooze")

maintenance_window_applications = db.Table(
    "maintenance_window_applications",
    db.Column("window_id", ForeignKey("maintenance_windows.id", ondelete="CASCADE"),
              primary_key=True),
    db.Column("application_id", ForeignKey("applications.id", ondelete="CASCADE"),
              primary_key=True, index=True),
)


class MaintenanceWindow(db.Model):
    """A time during which alerts about the applications it covers are held (SPEC §8).

    One-off (starts_at, ends_at), recurring (cron in timezone, duration_seconds) or a snooze
    (a one-off for one application). Covers its applications and tags; neither means all.
    """

    __tablename__ = "maintenance_windows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    starts_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    cron: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), nullable=False, default="UTC")
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    covers_all: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    tags: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    # Occurrences of a recurring window starting before this moment are skipped (one ended early).
    skip_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The occurrence in force or the next one, kept so "is it active now" is a plain comparison;
    # a recurring window's is moved on once it has ended (maintenance.refresh_occurrences).
    occurrence_starts_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    occurrence_ends_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)

    application_rows: Mapped[list[Application]] = relationship(
        secondary=maintenance_window_applications, lazy="selectin", order_by=Application.id)
