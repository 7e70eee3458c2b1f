"""§6.5, §6.6, §7 across hosts: two app servers, a monitor, PostgreSQL and Redis on their own
network namespaces, through a database link cut, a monitor host killed and an app host killed
(the timeline is in tests/system/scenario.py, run once by the `outcome` fixture). Each test
checks one promise on what the client, the flood and the alert sink saw and what the database
holds afterwards.
"""
from __future__ import annotations

from collections import Counter, defaultdict

from limits import parse

from redis_counters import local_share
from tests.system.deployment import APP_WORKERS, CLIENT_LIMIT_PER_MINUTE

# Counted in Redis, a heartbeat limit of N lets through at most N plus each serving process's
# local share (redis_counters.py): 2 hosts x 2 workers here. A host that cannot reach Redis
# counts in its own processes meanwhile; the flood runs with every link up.
RATE_LIMIT_TOLERANCE = 2 * APP_WORKERS * local_share(parse(f"{CLIENT_LIMIT_PER_MINUTE}/minute"))


def answered(attempt: dict) -> bool:
    return attempt["status"] is not None and 200 <= attempt["status"] < 300


def test_every_ping_answered_2xx_is_stored_exactly_once(outcome):
    attempts = outcome.attempts + outcome.flood_attempts
    stored = outcome.stored_by_user_agent
    not_once = [(a["user_agent"], a["host"], stored[a["user_agent"]])
                for a in attempts if answered(a) and stored[a["user_agent"]] != 1]
    assert sum(map(answered, attempts)) > CLIENT_LIMIT_PER_MINUTE  # the flood's and more
    assert not_once == []


def test_a_ping_refused_is_never_stored_and_one_unanswered_at_most_once(outcome):
    attempts = outcome.attempts + outcome.flood_attempts
    stored = outcome.stored_by_user_agent
    refused = [a["user_agent"] for a in attempts
               if a["status"] is not None and 400 <= a["status"] < 500 and stored[a["user_agent"]]]
    unanswered = [a["user_agent"] for a in attempts
                  if (a["status"] is None or a["status"] >= 500) and stored[a["user_agent"]] > 1]
    assert any(a["status"] == 429 for a in attempts)
    assert refused == []
    assert unanswered == []
    assert set(stored) <= {a["user_agent"] for a in attempts}  # every stored row is a ping sent


def test_the_client_fails_over_so_every_ping_is_answered_by_one_host(outcome):
    by_ping = defaultdict(list)
    for attempt in outcome.attempts:
        by_ping[attempt["round"], attempt["uuid"]].append(attempt)
    unanswered = [ping for ping, attempts in by_ping.items() if not any(map(answered, attempts))]
    failed_over = [ping for ping, attempts in by_ping.items() if len(attempts) > 1]
    assert unanswered == []
    assert failed_over, "no ping needed the other host: the faults did not reach the client"


def test_every_alert_is_delivered_and_reaches_the_sink_under_its_idempotency_key(outcome):
    keys = Counter(delivery["idempotency_key"] for delivery in outcome.deliveries)
    assert outcome.alerts
    assert all(delivery["idempotency_key"] == delivery["alert"]["alert_id"]
               for delivery in outcome.deliveries)
    assert {alert["uuid"]: alert["state"] for alert in outcome.alerts} == \
        {key: "delivered" for key in keys}


def test_each_incident_has_one_down_alert_and_one_up_alert_once_resolved(outcome):
    events = defaultdict(Counter)
    for alert in outcome.alerts:
        events[alert["incident_id"]][alert["event"]] += 1
    expected = {incident["id"]: Counter({"application.down": 1, "application.up": 1})
                if incident["resolved"] else Counter({"application.down": 1})
                for incident in outcome.incidents}
    assert dict(events) == expected


def test_applications_that_kept_their_schedule_never_alerted(outcome):
    kept_schedule = set(outcome.fleet.steady) | {outcome.fleet.flood_target}
    assert [i for i in outcome.incidents if i["application"] in kept_schedule] == []
    assert [a for a in outcome.alerts if a["application"] in kept_schedule] == []


def test_applications_that_went_silent_are_down_and_those_that_failed_recovered(outcome):
    incidents = defaultdict(list)
    for incident in outcome.incidents:  # oldest first
        incidents[incident["application"]].append(incident["resolved"])
    # Once down for good. Before that, one whose last ping waited in a cut-off host's spool was
    # judged from its earlier pings by the other hosts' monitors, and recovered on the replay.
    assert {uuid: incidents[uuid][-1:] for uuid in outcome.fleet.silent} == \
        {uuid: [False] for uuid in outcome.fleet.silent}
    assert {uuid: incidents[uuid] for uuid in outcome.fleet.failing} == \
        {uuid: [True] for uuid in outcome.fleet.failing}


def test_the_per_client_rate_limit_holds_across_both_hosts(outcome):
    flood = outcome.flood_attempts
    accepted = Counter(a["host"] for a in flood if answered(a))
    refused = Counter(a["host"] for a in flood if a["status"] == 429)
    assert len(flood) > CLIENT_LIMIT_PER_MINUTE
    assert len(accepted) == len(refused) == 2, (accepted, refused)  # both hosts took part
    assert sum(accepted.values()) <= CLIENT_LIMIT_PER_MINUTE + RATE_LIMIT_TOLERANCE
    assert sum(accepted.values()) + sum(refused.values()) == len(flood)
