"""The invariant checker: what the service promises, judged on what the run left behind.

Each invariant is a function of the requests sent (`Sent`, with their answers) and the facts
read afterwards (`Facts`); each returns the violations it found, each one line saying what,
which request or incident, and when. A resend of one alert under one Idempotency-Key counts
once (at-least-once delivery) and is reported apart, not as a violation.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Callable

from soak.facts import Facts
from soak.load import Sent

MISBEHAVING = ("silent", "failing", "hung")
DOCUMENTED_REFUSALS = {503: {"SERVICE_UNAVAILABLE", "DATABASE_UNAVAILABLE"},
                       429: {"RATE_LIMITED"}}
EVENTS = ("application.down", "application.up")


@dataclasses.dataclass
class Verdict:
    violations: dict[str, list[str]]  # invariant -> what broke it
    resends: dict[str, int]  # Idempotency-Key -> times received, where more than once
    # Heartbeats answered 503 yet stored once, whose commit's answer was lost with the database
    # while the spool could not take them either: the service cannot know (README).
    unknown_commits: list[str] = dataclasses.field(default_factory=list)

    @property
    def holds(self) -> bool:
        return not any(self.violations.values())


def _where(sent: Sent) -> str:
    during = f", during {sent.during}" if sent.during else ""
    return (f"{sent.form} for {sent.behaviour} application {sent.application} at "
            f"+{sent.at:.1f} s{during} (User-Agent {sent.token})")


def _heartbeats(sent: list[Sent]) -> list[Sent]:
    return [request for request in sent if request.kind is not None]


def answered_heartbeats_stored_once(sent: list[Sent], facts: Facts) -> list[str]:
    """Every heartbeat answered 2xx is stored exactly once, as the kind sent (a 202's
    heartbeat under the UUID it answered)."""
    found = []
    for request in _heartbeats(sent):
        if not request.answered_2xx:
            continue
        stored = facts.heartbeats.get(request.token, [])
        if not stored:
            found.append(f"lost: answered {request.status}, not stored: {_where(request)}")
        elif len(stored) > 1:
            found.append(f"stored {len(stored)} times: {_where(request)}")
        elif stored[0][1] != request.kind:
            found.append(f"stored as {stored[0][1]!r}, sent as {request.kind!r}: "
                         f"{_where(request)}")
        elif request.status == 202 and stored[0][0] != request.heartbeat_uuid:
            found.append(f"answered heartbeat {request.heartbeat_uuid}, stored "
                         f"{stored[0][0]}: {_where(request)}")
    return found


def _commit_unknown(request: Sent, facts: Facts) -> bool:
    return (request.database_lost and request.status == 503
            and len(facts.heartbeats.get(request.token, [])) == 1)


def nothing_stored_unless_accepted(sent: list[Sent], facts: Facts) -> list[str]:
    """A refused request stores nothing (but one refused as the database went away, whose
    commit may have gone through), a cut-off body stores nothing, a request without an answer
    stores at most once, and nothing is stored that no request sent."""
    found = []
    for request in _heartbeats(sent):
        count = len(facts.heartbeats.get(request.token, []))
        if request.cut_off and count:
            found.append(f"cut-off body stored as a complete heartbeat: {_where(request)}")
        elif _commit_unknown(request, facts):
            continue
        elif request.status is not None and not request.answered_2xx and count:
            found.append(f"answered {request.answer} yet stored "
                         f"{count} time(s): {_where(request)}")
        elif request.status is None and count > 1:
            found.append(f"no answer ({request.error}), stored {count} times: "
                         f"{_where(request)}")
    tokens = {request.token for request in sent}
    strangers = [token for token in facts.heartbeats if token not in tokens]
    if strangers or facts.foreign_heartbeats:
        found.append(f"{len(strangers) + facts.foreign_heartbeats} stored heartbeat(s) no "
                     f"request sent, e.g. {strangers[:3]}")
    return found


def only_documented_errors(sent: list[Sent], facts: Facts) -> list[str]:
    """No 5xx but 503 with Retry-After; no refusal of a valid request but 429 with
    Retry-After; every error is the JSON envelope."""
    found = []
    for request in sent:
        if request.status is None or request.status < 400:
            continue
        codes = DOCUMENTED_REFUSALS.get(request.status)
        if codes is None:
            found.append(f"answered {request.answer}: {_where(request)}")
        elif (request.code not in codes and not request.form.startswith("HEAD")) \
                or not (request.retry_after or "").isdigit():
            found.append(f"answered {request.answer} with Retry-After "
                         f"{request.retry_after!r}: {_where(request)}")
    return found


def _channels_of(facts: Facts, application_id: int) -> tuple[int, ...]:
    application = facts.applications.get(application_id)
    return application.channel_ids if application else ()


def incidents_alerted_once_per_channel(sent: list[Sent], facts: Facts) -> list[str]:
    """For every incident and each of its application's channels: one down alert and, once
    resolved, one recovery alert, each delivered and received under its Idempotency-Key;
    every delivery received is such an alert, at the channel it was for."""
    found = []
    by_incident = collections.defaultdict(list)
    for alert in facts.alerts:
        by_incident[(alert.incident_id, alert.channel_id, alert.event)].append(alert)
    received = collections.Counter((receipt.channel, receipt.idempotency_key)
                                   for receipt in facts.receipts)
    incidents = {incident.id: incident for incident in facts.incidents}
    for incident in facts.incidents:
        events = EVENTS if incident.resolved_at is not None else EVENTS[:1]
        for channel_id in _channels_of(facts, incident.application_id):
            channel = facts.channels[channel_id]
            for event in events:
                alerts = by_incident.pop((incident.id, channel_id, event), [])
                what = f"incident {incident.id} ({incident.reason}, {incident.started_at:%H:%M:%S})"
                if len(alerts) != 1:
                    found.append(f"{what}: {len(alerts)} {event} alerts for channel {channel}")
                for alert in alerts:
                    if alert.state != "delivered":
                        found.append(f"{what}: {event} alert {alert.uuid} for {channel} is "
                                     f"{alert.state} after {alert.attempt_count} attempt(s)")
                    elif received[(channel, alert.uuid)] == 0:
                        found.append(f"{what}: {event} alert {alert.uuid} recorded delivered, "
                                     f"never received by {channel}")
    for (incident_id, channel_id, event), alerts in by_incident.items():
        for alert in alerts:
            reason = "no incident" if incident_id not in incidents else \
                "a channel the application does not have, or an unresolved incident"
            found.append(f"alert {alert.uuid} ({event}, {facts.channels.get(channel_id)}) "
                         f"for {reason}")
    known = {(facts.channels[alert.channel_id], alert.uuid) for alert in facts.alerts}
    for receipt in facts.receipts:
        if (receipt.channel, receipt.idempotency_key) not in known:
            found.append(f"{receipt.channel} received Idempotency-Key "
                         f"{receipt.idempotency_key!r}, which is no alert of that channel")
        elif receipt.alert_id is not None and receipt.alert_id != receipt.idempotency_key:
            found.append(f"{receipt.channel} received alert_id {receipt.alert_id} under "
                         f"Idempotency-Key {receipt.idempotency_key}")
    return found


def _behaviour_of(facts: Facts, application_id: int | None) -> str:
    application = facts.applications.get(application_id)
    return application.name.split("-")[0] if application else "unknown"


def no_alert_for_kept_schedules(sent: list[Sent], facts: Facts) -> list[str]:
    """An application that kept its schedule has no incident and gets no alert."""
    found = []
    for incident in facts.incidents:
        if _behaviour_of(facts, incident.application_id) == "steady":
            application = facts.applications[incident.application_id]
            found.append(f"false alarm: incident {incident.id} ({incident.reason}) for "
                         f"{application.name} {application.uuid}, opened "
                         f"{incident.started_at:%H:%M:%S.%f}")
    for alert in facts.alerts:
        if alert.incident_id is None and _behaviour_of(facts, alert.application_id) == "steady":
            found.append(f"false alarm: alert {alert.uuid} ({alert.event})")
    return found


def misbehaviour_alerted_and_recovered(sent: list[Sent], facts: Facts) -> list[str]:
    """Each application that went silent, failed or hung had an incident, and every incident
    is resolved by a stored success once the application keeps its schedule again."""
    found = []
    with_incidents = {incident.application_id for incident in facts.incidents}
    for application in facts.applications.values():
        if _behaviour_of(facts, application.id) in MISBEHAVING \
                and application.id not in with_incidents:
            found.append(f"never alerted, though it went silent, failed or hung: "
                         f"{application.name} {application.uuid}")
    for incident in facts.incidents:
        if incident.resolved_at is None:
            found.append(f"still open at the end: incident {incident.id} of "
                         f"{facts.applications[incident.application_id].name}")
        elif incident.resolved_at not in facts.successes.get(incident.application_id, set()):
            found.append(f"incident {incident.id} resolved at {incident.resolved_at}, when no "
                         f"success of its application was received")
    return found


def one_open_incident_per_application(sent: list[Sent], facts: Facts) -> list[str]:
    """An application has at most one open incident at a time."""
    found = []
    by_application = collections.defaultdict(list)
    for incident in facts.incidents:
        by_application[incident.application_id].append(incident)
    for application_id, incidents in by_application.items():
        incidents.sort(key=lambda incident: (incident.started_at, incident.id))
        for earlier, later in zip(incidents, incidents[1:]):
            if earlier.resolved_at is None or later.started_at < earlier.resolved_at:
                found.append(f"incidents {earlier.id} and {later.id} of "
                             f"{facts.applications[application_id].name} open at once")
    return found


def spool_drained(sent: list[Sent], facts: Facts) -> list[str]:
    """Once the database is back and the monitor ran, nothing is left in the spool."""
    return [f"{name} left in the spool ({size} bytes)"
            for name, size in facts.spool_files.items()]


def clean_shutdown(sent: list[Sent], facts: Facts) -> list[str]:
    """The server and the monitor stop cleanly on SIGTERM (in-flight work finished)."""
    return [f"{process} exited with {code} on SIGTERM"
            for process, code in facts.exit_codes.items() if code != 0]


INVARIANTS: dict[str, Callable[[list[Sent], Facts], list[str]]] = {
    "every heartbeat answered 2xx is stored exactly once": answered_heartbeats_stored_once,
    "nothing is stored for a refused or cut-off request": nothing_stored_unless_accepted,
    "no 5xx but the documented 503 (and 429) with Retry-After": only_documented_errors,
    "every incident is alerted exactly once per channel": incidents_alerted_once_per_channel,
    "no alert for an application that kept its schedule": no_alert_for_kept_schedules,
    "every misbehaving application is alerted and recovers": misbehaviour_alerted_and_recovered,
    "at most one open incident per application": one_open_incident_per_application,
    "the spool is empty at the end": spool_drained,
    "the server and the monitor stop cleanly": clean_shutdown,
}


def check(sent: list[Sent], facts: Facts) -> Verdict:
    """Judge every invariant; count resends by Idempotency-Key."""
    received = collections.Counter((receipt.channel, receipt.idempotency_key)
                                   for receipt in facts.receipts)
    resends = {f"{channel}:{key}": count for (channel, key), count in received.items()
               if count > 1}
    return Verdict({name: invariant(sent, facts) for name, invariant in INVARIANTS.items()},
                   resends, [_where(request) for request in _heartbeats(sent)
                             if _commit_unknown(request, facts)])
