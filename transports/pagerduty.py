"""PagerDuty's Events API v2: one alert per incident, which PagerDuty groups and closes itself.

Down (and its reminders and escalation steps) sends a `trigger`, an acknowledgement an
`acknowledge`, recovery a `resolve`, all with the incident's `dedup_key` (SPEC §6.8). The
channel's `routing_key` (its integration key) is kept as the channel's secret, never returned.
PagerDuty answers `202` when it took the event, `400` for one it never will (permanent), `429`
when it is rate limiting (transient, retried with backoff).
"""
from __future__ import annotations

import json
from typing import Any

from alert_content import headline
from transports.base import USER_AGENT, Destination, permanent
from transports.webhook import Webhook

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
ACTIONS = {"application.down": "trigger", "application.still_down": "trigger",
           "application.acknowledged": "acknowledge", "application.up": "resolve"}


class PagerDuty(Webhook):
    """Posts an Events API v2 event for the alert to the channel's `url` or PagerDuty's."""

    receives_acknowledgements = True

    def deliver(self, destination: Destination, alert_uuid: str,
                payload: dict[str, Any]) -> int | None:
        if not destination.secret:
            raise permanent("the channel has no routing_key")
        body = json.dumps(pagerduty_event(destination.secret, payload)).encode()
        headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json",
                   "Idempotency-Key": alert_uuid}
        return self.post(destination.url or DEFAULT_URL, body, headers)


def dedup_key(payload: dict[str, Any]) -> str:
    """One per incident, so every event about it lands on one PagerDuty alert."""
    incident = payload.get("incident")
    if incident:
        application = (payload.get("application") or {}).get("uuid", "")
        return f"heartbeat-monitor/{application}/incident/{incident['id']}"
    return f"heartbeat-monitor/alert/{payload.get('alert_id', '')}"


def pagerduty_event(routing_key: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The Events API v2 body for an alert payload."""
    action = ACTIONS.get(payload.get("event", ""), "trigger")
    event: dict[str, Any] = {"routing_key": routing_key, "event_action": action,
                             "dedup_key": dedup_key(payload)}
    if action != "trigger":
        return event
    application = payload.get("application") or {}
    incident = payload.get("incident") or {}
    last = payload.get("last_heartbeat") or {}
    details = {"reason": incident.get("reason"), "down_since": incident.get("started_at"),
               "last_seen": application.get("last_heartbeat_at"),
               "schedule": (application.get("schedule") or {}).get("text"),
               "exit_code": last.get("exit_code"), "last_message": last.get("message") or None,
               "escalation_step": payload.get("escalation_step"),
               "acknowledge_url": payload.get("ack_url")}
    summary = {"summary": headline(payload)[:1024],
               "source": application.get("name") or "heartbeat-monitor",
               "severity": "critical" if application else "error",
               "timestamp": payload.get("occurred_at"), "component": application.get("name"),
               "class": incident.get("reason") or payload.get("event"),
               "custom_details": {name: value for name, value in details.items()
                                  if value is not None}}
    event["payload"] = {name: value for name, value in summary.items() if value is not None}
    event["client"] = "Heartbeat Monitor"
    if application.get("url"):
        event["client_url"] = application["url"]
        event["links"] = [{"href": application["url"], "text": application.get("name", "")}]
    return event
