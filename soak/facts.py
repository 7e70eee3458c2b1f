"""What the run left behind, read once it is over: the database (directly, not through the
proxy), the sinks' deliveries and the spool directory. The checker judges these facts."""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt

from soak.load import AGENT
from tests.sinks import HttpSink


@dataclasses.dataclass(frozen=True)
class StoredApplication:
    id: int
    uuid: str
    name: str
    channel_ids: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class StoredIncident:
    id: int
    application_id: int
    reason: str
    started_at: dt.datetime
    resolved_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class StoredAlert:
    uuid: str
    channel_id: int
    application_id: int | None
    incident_id: int | None
    event: str
    state: str
    attempt_count: int
    created_at: dt.datetime
    delivered_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class Receipt:
    """One delivery a sink took (answered 2xx): the channel it stands for and the key."""

    channel: str
    idempotency_key: str | None
    alert_id: str | None  # the webhook body's alert_id, where the body has one


@dataclasses.dataclass
class Facts:
    # token (User-Agent) -> [(heartbeat uuid, kind)] of every heartbeat stored under it
    heartbeats: dict[str, list[tuple[str, str]]]
    foreign_heartbeats: int  # stored, but under no User-Agent the load sent
    applications: dict[int, StoredApplication]
    channels: dict[int, str]  # id -> name
    incidents: list[StoredIncident]
    alerts: list[StoredAlert]
    successes: dict[int, set[dt.datetime]]  # application id -> received_at of each "ok"
    receipts: list[Receipt]
    spool_files: dict[str, int]  # name -> bytes, left in SPOOL_DIR after the run
    exit_codes: dict[str, int]  # process -> its exit code after SIGTERM at the end
    error_types: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    attempt_outcomes: collections.Counter = dataclasses.field(
        default_factory=collections.Counter)
    sink_answers: dict[str, collections.Counter] = dataclasses.field(default_factory=dict)


def _rows(connection, statement: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement)
        return cursor.fetchall()


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    return moment.replace(tzinfo=dt.timezone.utc) if moment and moment.tzinfo is None else moment


def read_facts(connection, sinks: dict[str, HttpSink], spool_files: dict[str, int],
               exit_codes: dict[str, int]) -> Facts:
    """Everything the checker needs, from a direct connection to the soak's database."""
    heartbeats: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    foreign = 0
    for agent, uuid, kind in _rows(connection, "SELECT user_agent, uuid, kind FROM heartbeats"):
        if agent and agent.startswith(AGENT + "/"):
            heartbeats[agent].append((uuid, kind))
        else:
            foreign += 1
    channel_ids: dict[int, list[int]] = collections.defaultdict(list)
    for application_id, channel_id in _rows(
            connection, "SELECT application_id, channel_id FROM application_channels"):
        channel_ids[application_id].append(channel_id)
    applications = {row[0]: StoredApplication(row[0], row[1], row[2],
                                               tuple(sorted(channel_ids[row[0]])))
                    for row in _rows(connection, "SELECT id, uuid, name FROM applications")}
    incidents = [StoredIncident(row[0], row[1], row[2], _utc(row[3]), _utc(row[4]))
                 for row in _rows(connection, "SELECT id, application_id, reason, started_at, "
                                              "resolved_at FROM incidents ORDER BY id")]
    alerts = [StoredAlert(row[0], row[1], row[2], row[3], row[4], row[5], row[6], _utc(row[7]),
                          _utc(row[8]))
              for row in _rows(connection,
                               "SELECT uuid, channel_id, application_id, incident_id, event, "
                               "state, attempt_count, created_at, delivered_at FROM alerts "
                               "ORDER BY id")]
    successes: dict[int, set[dt.datetime]] = collections.defaultdict(set)
    for application_id, received_at in _rows(
            connection, "SELECT h.application_id, h.received_at FROM heartbeats h WHERE "
                        "h.kind = 'ok' AND h.application_id IN "
                        "(SELECT application_id FROM incidents)"):
        successes[application_id].add(_utc(received_at))
    receipts = []
    for name, sink in sinks.items():
        with sink.lock:
            received = list(sink.received)
        for request in received:
            body = request["json"] if isinstance(request["json"], dict) else {}
            receipts.append(Receipt(name, request["headers"].get("Idempotency-Key"),
                                    body.get("alert_id")))
    return Facts(
        heartbeats=dict(heartbeats), foreign_heartbeats=foreign, applications=applications,
        channels=dict(_rows(connection, "SELECT id, name FROM channels")), incidents=incidents,
        alerts=alerts, successes=dict(successes), receipts=receipts, spool_files=spool_files,
        exit_codes=exit_codes,
        error_types=collections.Counter(dict(_rows(
            connection, "SELECT error_type, sum(occurrence_count) FROM error_logs "
                        "GROUP BY error_type"))),
        attempt_outcomes=collections.Counter(dict(_rows(
            connection, "SELECT outcome, count(*) FROM delivery_attempts GROUP BY outcome"))),
        sink_answers={name: collections.Counter(sink.answered) for name, sink in sinks.items()})
