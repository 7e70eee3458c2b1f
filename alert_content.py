"""What an alert says: the facts a recipient needs, and how people read them (SPEC §6.4a).

`alert_facts` adds to an alert's payload, when it is queued: the application's schedule, a
link to it (PUBLIC_BASE_URL) and its last heartbeat (kind, time, exit code, message truncated
to MESSAGE_LIMIT characters). `headline`, `text_body` and `html_body` render any payload for
people: an email's subject and parts, a Slack message, a PagerDuty summary, an Apprise body.
"""
from __future__ import annotations

import contextlib
import html
from typing import Any, Iterator

from sqlalchemy import Integer, String, Text, select, text

from ack_links import public_base_url
from database import UTCDateTime, db
from models import Application, Heartbeat
from utils.clock import utc_iso

MESSAGE_LIMIT = 1000  # characters of the last heartbeat's message an alert quotes
REASONS = {"missed": "no heartbeat arrived in time",
           "failed": "the job reported a failure",
           "too_short": "the run ended sooner than its minimum duration",
           "too_long": "the run has not finished within its maximum duration"}
EVENT_WORDS = {"application.down": "is DOWN", "application.still_down": "is still DOWN",
               "application.up": "is back UP", "application.acknowledged": "was acknowledged"}


def application_url(application_uuid: str) -> str:
    """The application's page in the console."""
    return f"{public_base_url()}/applications/{application_uuid}"


LAST_HEARTBEATS = "hbmon_last_heartbeats"  # db.session.info key while prefetched
LAST = (Heartbeat.kind, Heartbeat.received_at, Heartbeat.exit_code, Heartbeat.message)
# One round trip for a batch of applications on PostgreSQL: the index gives each its newest.
LAST_OF_MANY = text("""
SELECT a.id, h.kind, h.received_at, h.exit_code, h.message
FROM unnest(CAST(:ids AS integer[])) AS a(id)
CROSS JOIN LATERAL (
    SELECT kind, received_at, exit_code, message FROM heartbeats
    WHERE application_id = a.id AND kind <> 'log'
    ORDER BY received_at DESC, id DESC LIMIT 1) AS h
""").columns(id=Integer, kind=String, received_at=UTCDateTime, exit_code=Integer,
             message=Text)


def _last_heartbeat(application_id: int) -> Any:
    # No autoflush: the heartbeat that caused a transition is already stored
    # (ingest/orm_store.py), and flushing a batch's pending rows once per alert is slow.
    with db.session.no_autoflush:
        return db.session.execute(
            select(*LAST).where(Heartbeat.application_id == application_id,
                                Heartbeat.kind != "log")
            .order_by(Heartbeat.received_at.desc(), Heartbeat.id.desc()).limit(1)).first()


@contextlib.contextmanager
def last_heartbeats_prefetched(applications: list[Application]) -> Iterator[None]:
    """Within: alert_facts finds these applications' last heartbeats read in one query (the
    monitor queues a thousand transitions' alerts at once; one query each tripled its tick)."""
    ids = [application.id for application in applications]
    if db.engine.dialect.name == "postgresql":
        with db.session.no_autoflush:
            found = {row.id: row for row in db.session.execute(LAST_OF_MANY, {"ids": ids})}
    else:  # SQLite: in-process, one indexed query each costs little
        found = {application_id: _last_heartbeat(application_id) for application_id in ids}
    db.session.info[LAST_HEARTBEATS] = {application_id: found.get(application_id)
                                        for application_id in ids}
    try:
        yield
    finally:
        db.session.info.pop(LAST_HEARTBEATS, None)


def alert_facts(application: Application) -> dict[str, Any]:
    """The schedule, link and last heartbeat of the application, for its alert payload."""
    prefetched = db.session.info.get(LAST_HEARTBEATS) or {}
    if application.id in prefetched:
        last = prefetched[application.id]
    else:
        last = _last_heartbeat(application.id)
    last_heartbeat = None
    if last is not None:
        message = last.message or ""
        last_heartbeat = {"kind": last.kind, "received_at": utc_iso(last.received_at),
                          "exit_code": last.exit_code, "message": message[:MESSAGE_LIMIT],
                          "message_truncated": len(message) > MESSAGE_LIMIT}
    schedule = {"period_seconds": application.period_seconds, "cron": application.cron,
                "timezone": application.timezone, "grace_seconds": application.grace_seconds}
    return {"schedule": {**schedule, "text": schedule_text(schedule)},
            "url": application_url(application.uuid), "last_heartbeat": last_heartbeat}


def duration_text(seconds: float | None) -> str:
    """90 -> "1 min 30 s", 3600 -> "1 h"."""
    remaining = int(seconds or 0)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if remaining >= size:
            parts.append(f"{remaining // size} {unit}")
            remaining %= size
    return " ".join(parts[:2]) or "0 s"


def schedule_text(schedule: dict[str, Any]) -> str:
    if schedule.get("cron"):
        every = f"cron {schedule['cron']} ({schedule.get('timezone') or 'UTC'})"
    elif schedule.get("period_seconds"):
        every = f"every {duration_text(schedule['period_seconds'])}"
    else:
        every = "no schedule"
    return f"{every}, grace {duration_text(schedule.get('grace_seconds'))}"


def _exit_code(payload: dict[str, Any]) -> int | None:
    return (payload.get("last_heartbeat") or {}).get("exit_code")


def headline(payload: dict[str, Any]) -> str:
    """One line saying what happened: a subject, a Slack text, a PagerDuty summary."""
    event = payload.get("event", "")
    name = (payload.get("application") or {}).get("name", "")
    if event in ("application.down", "application.still_down"):
        reason = (payload.get("incident") or {}).get("reason", "")
        code = _exit_code(payload)
        detail = f"{reason}, exit code {code}" if code not in (None, 0) else reason
        return f"{name} {EVENT_WORDS[event]} ({detail})"
    if event in EVENT_WORDS:
        return f"{name} {EVENT_WORDS[event]}"
    if event == "service.error_rate_high":
        return "Heartbeat Monitor: error rate is high"
    if event == "channel.test":
        return "Heartbeat Monitor: test alert"
    return f"Heartbeat Monitor: {event}"


def _rows(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) lines of the body, in reading order."""
    application = payload.get("application") or {}
    incident = payload.get("incident") or {}
    last = payload.get("last_heartbeat") or {}
    rows = []
    if incident.get("reason"):
        reason = incident["reason"]
        rows.append(("Reason", f"{reason}: {REASONS[reason]}" if reason in REASONS else reason))
    if application:
        rows.append(("Last seen", application.get("last_heartbeat_at") or "never"))
    if application.get("schedule"):
        rows.append(("Schedule", application["schedule"].get("text", "")))
    if last.get("exit_code") is not None:
        rows.append(("Exit code", str(last["exit_code"])))
    if incident.get("started_at"):
        rows.append(("Down since", incident["started_at"]))
    if incident.get("resolved_at"):
        rows.append(("Up again at", incident["resolved_at"]))
    if payload.get("escalation_step"):
        rows.append(("Escalation step", str(payload["escalation_step"])))
    if payload.get("event") == "service.error_rate_high":
        rows.append(("Error rate", f"{payload.get('error_rate', 0) * 100:.1f}% of "
                                   f"{payload.get('requests', 0)} requests"))
    return rows


def _message(payload: dict[str, Any]) -> str | None:
    last = payload.get("last_heartbeat") or {}
    if not last.get("message"):
        return None
    return last["message"] + (" […]" if last.get("message_truncated") else "")


def _links(payload: dict[str, Any]) -> list[tuple[str, str]]:
    links = []
    if payload.get("ack_url"):
        links.append(("Acknowledge", payload["ack_url"]))
    if (payload.get("application") or {}).get("url"):
        links.append(("Application", payload["application"]["url"]))
    return links


def text_body(payload: dict[str, Any]) -> str:
    """The plain-text body: what happened, the facts, the last message, the links."""
    lines = [headline(payload), ""]
    lines += [f"{label + ':':<16}{value}" for label, value in _rows(payload)]
    message = _message(payload)
    if message:
        lines += ["", "Last message:"] + [f"    {line}" for line in message.splitlines()]
    links = _links(payload)
    if links:
        lines.append("")
        lines += [f"{label + ':':<16}{url}" for label, url in links]
    lines += ["", f"Alert {payload.get('alert_id', '')} at {payload.get('occurred_at', '')}"]
    return "\n".join(lines) + "\n"


def html_body(payload: dict[str, Any]) -> str:
    """The same as text_body, as a small HTML document (every value escaped)."""
    escape = html.escape
    rows = "".join(f"<tr><th align=\"left\">{escape(label)}</th><td>{escape(value)}</td></tr>"
                   for label, value in _rows(payload))
    parts = [f"<h2>{escape(headline(payload))}</h2>", f"<table>{rows}</table>"]
    message = _message(payload)
    if message:
        parts.append(f"<p><strong>Last message</strong></p><pre>{escape(message)}</pre>")
    parts += [f"<p><a href=\"{escape(url)}\">{escape(label)}</a></p>"
              for label, url in _links(payload)]
    parts.append(f"<p><small>Alert {escape(str(payload.get('alert_id', '')))} at "
                 f"{escape(str(payload.get('occurred_at', '')))}</small></p>")
    return ("<!DOCTYPE html><html><body style=\"font-family: sans-serif\">"
            + "".join(parts) + "</body></html>\n")

