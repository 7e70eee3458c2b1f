"""The soak's invariant checker: each invariant holds on a sound run and fails when its promise
is broken (a heartbeat lost or doubled, an alert missing or doubled, a false alarm, …)."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from soak.checker import INVARIANTS, check
from soak.facts import Facts, Receipt, StoredAlert, StoredApplication, StoredIncident
from soak.fault_schedule import Fault, database_lost_in_flight
from soak.load import Sent
from soak.report import render, summarize

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
STEADY, SILENT = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
OPS, TEAM = 1, 2


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def sound_run() -> tuple[list[Sent], Facts]:
    """A steady application pinged twice; a silent one alerted down and up on two channels."""
    sent = [
        Sent("hbmon-soak/1", STEADY, "steady", "GET /ping/<uuid>", "ok", 1.0, status=200),
        Sent("hbmon-soak/2", STEADY, "steady", "JSON fail", "fail", 2.0, status=202,
             heartbeat_uuid="h2"),
        Sent("hbmon-soak/3", SILENT, "silent", "GET /ping/<uuid>", "ok", 3.0, status=503,
             retry_after="5", code="SERVICE_UNAVAILABLE"),
        Sent("hbmon-soak/4", SILENT, "silent", "GET /ping/<uuid>", "ok", 4.0, status=None,
             error="ConnectionError"),
        Sent("hbmon-soak/5", SILENT, "silent", "cut-off body", "log", 5.0, cut_off=True),
        Sent("hbmon-soak/6", SILENT, "silent", "GET /ping/<uuid>", "ok", 30.0, status=200),
        Sent("hbmon-soak/7", SILENT, "silent", "GET /api/v1/applications/<uuid>", None, 31.0,
             status=503, retry_after="5", code="DATABASE_UNAVAILABLE"),
    ]
    alerts = [StoredAlert(f"{event}-{channel}", channel, 2, 1, f"application.{event}",
                          "delivered", 1, _at(20), _at(21))
              for event in ("down", "up") for channel in (OPS, TEAM)]
    facts = Facts(
        heartbeats={"hbmon-soak/1": [("h1", "ok")], "hbmon-soak/2": [("h2", "fail")],
                    "hbmon-soak/4": [("h4", "ok")], "hbmon-soak/6": [("h6", "ok")]},
        foreign_heartbeats=0,
        applications={1: StoredApplication(1, STEADY, "steady-000", (OPS, TEAM)),
                      2: StoredApplication(2, SILENT, "silent-001", (OPS, TEAM))},
        channels={OPS: "ops", TEAM: "team"},
        incidents=[StoredIncident(1, 2, "missed", _at(20), _at(30))],
        alerts=alerts,
        successes={2: {_at(30)}},
        receipts=[Receipt({OPS: "ops", TEAM: "team"}[alert.channel_id], alert.uuid,
                          alert.uuid) for alert in alerts],
        spool_files={}, exit_codes={"monitor": 0, "server": 0})
    return sent, facts


def broken(invariant: str, sent: list[Sent], facts: Facts) -> list[str]:
    verdict = check(sent, facts)
    assert [name for name, found in verdict.violations.items() if found] == [invariant], \
        verdict.violations
    return verdict.violations[invariant]


def test_a_sound_run_holds_every_invariant():
    sent, facts = sound_run()
    verdict = check(sent, facts)
    assert verdict.holds, verdict.violations
    assert set(verdict.violations) == set(INVARIANTS)
    assert verdict.resends == {}


STORED_ONCE = "every heartbeat answered 2xx is stored exactly once"
NOTHING_REFUSED = "nothing is stored for a refused or cut-off request"
DOCUMENTED = "no 5xx but the documented 503 (and 429) with Retry-After"
ALERTED_ONCE = "every incident is alerted exactly once per channel"
NO_FALSE_ALARM = "no alert for an application that kept its schedule"
RECOVERS = "every misbehaving application is alerted and recovers"


def test_a_lost_heartbeat_breaks_stored_once():
    sent, facts = sound_run()
    del facts.heartbeats["hbmon-soak/1"]
    assert broken(STORED_ONCE, sent, facts)[0].startswith("lost: answered 200")


def test_a_doubled_heartbeat_breaks_stored_once():
    sent, facts = sound_run()
    facts.heartbeats["hbmon-soak/6"].append(("h6-again", "ok"))
    assert "stored 2 times" in broken(STORED_ONCE, sent, facts)[0]


def test_a_heartbeat_stored_as_another_kind_breaks_stored_once():
    sent, facts = sound_run()
    facts.heartbeats["hbmon-soak/2"] = [("h2", "ok")]
    assert "stored as 'ok', sent as 'fail'" in broken(STORED_ONCE, sent, facts)[0]


def test_a_202_naming_another_heartbeat_breaks_stored_once():
    sent, facts = sound_run()
    facts.heartbeats["hbmon-soak/2"] = [("other", "fail")]
    assert "answered heartbeat h2, stored other" in broken(STORED_ONCE, sent, facts)[0]


def test_a_refused_heartbeat_that_was_stored_breaks_nothing_refused():
    sent, facts = sound_run()
    facts.heartbeats["hbmon-soak/3"] = [("h3", "ok")]
    assert "answered 503 SERVICE_UNAVAILABLE yet stored" in broken(NOTHING_REFUSED, sent, facts)[0]


def test_a_503_as_the_database_went_away_may_be_stored_once_and_is_reported():
    sent, facts = sound_run()
    refused = next(request for request in sent if request.token == "hbmon-soak/3")
    refused.database_lost = True
    facts.heartbeats["hbmon-soak/3"] = [("h3", "ok")]
    verdict = check(sent, facts)
    assert verdict.holds and len(verdict.unknown_commits) == 1
    facts.heartbeats["hbmon-soak/3"] = [("h3", "ok"), ("h3b", "ok")]
    assert "answered 503 SERVICE_UNAVAILABLE yet stored 2" in broken(NOTHING_REFUSED, sent, facts)[0]


def test_a_stored_cut_off_body_breaks_nothing_refused():
    sent, facts = sound_run()
    facts.heartbeats["hbmon-soak/5"] = [("h5", "log")]
    assert broken(NOTHING_REFUSED, sent, facts)[0].startswith("cut-off body stored")


def test_an_unanswered_heartbeat_stored_twice_breaks_nothing_refused():
    sent, facts = sound_run()
    facts.heartbeats["hbmon-soak/4"].append(("h4-again", "ok"))
    assert "no answer (ConnectionError), stored 2 times" in broken(NOTHING_REFUSED, sent, facts)[0]


def test_a_heartbeat_nobody_sent_breaks_nothing_refused():
    sent, facts = sound_run()
    facts.foreign_heartbeats = 1
    assert "no request sent" in broken(NOTHING_REFUSED, sent, facts)[0]


@pytest.mark.parametrize("changes", [
    {"status": 500, "code": "INTERNAL_ERROR", "retry_after": None},
    {"retry_after": None},  # a 503 without Retry-After
    {"code": "NOT_AN_ENVELOPE"},  # an HTML error page
    {"status": 404, "code": "HEARTBEAT_NOT_FOUND", "retry_after": None},
])
def test_an_undocumented_error_breaks_documented(changes):
    sent, facts = sound_run()
    sent[2] = dataclasses.replace(sent[2], **changes)
    assert len(broken(DOCUMENTED, sent, facts)) == 1


def test_an_incident_without_its_alert_breaks_alerted_once():
    sent, facts = sound_run()
    facts.alerts = facts.alerts[1:]
    facts.receipts = facts.receipts[1:]
    assert "0 application.down alerts for channel ops" in broken(ALERTED_ONCE, sent, facts)[0]


def test_an_incident_alerted_twice_on_one_channel_breaks_alerted_once():
    sent, facts = sound_run()
    second = dataclasses.replace(facts.alerts[0], uuid="down-1-again")
    facts.alerts.append(second)
    facts.receipts.append(Receipt("ops", second.uuid, second.uuid))
    assert "2 application.down alerts for channel ops" in broken(ALERTED_ONCE, sent, facts)[0]


def test_an_alert_never_delivered_breaks_alerted_once():
    sent, facts = sound_run()
    facts.alerts[0] = dataclasses.replace(facts.alerts[0], state="dead")
    assert "is dead" in broken(ALERTED_ONCE, sent, facts)[0]


def test_an_alert_recorded_delivered_but_never_received_breaks_alerted_once():
    sent, facts = sound_run()
    facts.receipts = facts.receipts[1:]
    assert "never received by ops" in broken(ALERTED_ONCE, sent, facts)[0]


def test_a_delivery_that_is_no_alert_of_its_channel_breaks_alerted_once():
    sent, facts = sound_run()
    facts.receipts.append(Receipt("team", facts.alerts[0].uuid, facts.alerts[0].uuid))
    assert "which is no alert of that channel" in broken(ALERTED_ONCE, sent, facts)[0]


def test_a_resend_under_the_same_key_counts_once_and_is_reported():
    sent, facts = sound_run()
    facts.receipts.append(facts.receipts[0])
    verdict = check(sent, facts)
    assert verdict.holds
    assert verdict.resends == {"ops:down-1": 2}


def test_an_incident_of_a_steady_application_breaks_no_false_alarm():
    sent, facts = sound_run()
    facts.incidents.append(StoredIncident(2, 1, "missed", _at(40), None))
    verdict = check(sent, facts)
    assert verdict.violations[NO_FALSE_ALARM][0].startswith("false alarm: incident 2")
    assert not verdict.holds


def test_an_application_that_misbehaved_unnoticed_breaks_recovers():
    sent, facts = sound_run()
    facts.incidents, facts.alerts, facts.receipts = [], [], []
    assert broken(RECOVERS, sent, facts)[0].startswith("never alerted")


def test_an_incident_still_open_breaks_recovers():
    sent, facts = sound_run()
    facts.incidents[0] = dataclasses.replace(facts.incidents[0], resolved_at=None)
    facts.alerts = [alert for alert in facts.alerts if alert.event == "application.down"]
    facts.receipts = facts.receipts[:2]
    assert broken(RECOVERS, sent, facts)[0].startswith("still open at the end")


def test_an_incident_resolved_without_a_success_breaks_recovers():
    sent, facts = sound_run()
    facts.successes = {2: {_at(29)}}
    assert "when no success of its application" in broken(RECOVERS, sent, facts)[0]


def test_two_open_incidents_at_once_break_one_open_incident():
    sent, facts = sound_run()
    facts.incidents.append(StoredIncident(2, 2, "failed", _at(25), _at(30)))
    facts.alerts += [StoredAlert(f"{event}-{channel}-2", channel, 2, 2, f"application.{event}",
                                 "delivered", 1, _at(25), _at(26))
                     for event in ("down", "up") for channel in (OPS, TEAM)]
    facts.receipts += [Receipt({OPS: "ops", TEAM: "team"}[alert.channel_id], alert.uuid,
                               alert.uuid) for alert in facts.alerts[4:]]
    assert "incidents 1 and 2 of silent-001 open at once" in broken(
        "at most one open incident per application", sent, facts)[0]


def test_a_spool_left_behind_breaks_spool_drained():
    sent, facts = sound_run()
    facts.spool_files = {"heartbeats.jsonl": 412}
    assert broken("the spool is empty at the end", sent, facts) == [
        "heartbeats.jsonl left in the spool (412 bytes)"]


def test_an_unclean_exit_breaks_clean_shutdown():
    sent, facts = sound_run()
    facts.exit_codes["server"] = -9
    assert broken("the server and the monitor stop cleanly", sent, facts) == [
        "server exited with -9 on SIGTERM"]


def test_the_database_is_lost_in_flight_only_when_its_fault_begins_during_the_request():
    cut = Fault(at=10.0, kind="db_cut", seconds=4.0, started=10.0, ended=14.0)
    full = Fault(at=30.0, kind="disk_full", seconds=3.0, started=30.0, ended=33.0)
    slow = Fault(at=50.0, kind="db_slow", seconds=3.0, started=50.0, ended=53.0)
    faults = [cut, full, slow]
    assert database_lost_in_flight(faults, 9.9, 10.2)
    assert database_lost_in_flight(faults, 29.5, 30.0)
    assert not database_lost_in_flight(faults, 10.5, 11.0)  # sent while it was already down
    assert not database_lost_in_flight(faults, 49.9, 50.5)  # slow is not lost


def test_the_summary_reports_a_503_stored_as_the_database_went_away():
    sent, facts = sound_run()
    next(request for request in sent if request.token == "hbmon-soak/3").database_lost = True
    facts.heartbeats["hbmon-soak/3"] = [("h3", "ok")]
    run = {"minutes": 1, "seed": 1, "applications": 2, "workers": 1,
           "channels": {"ops": "webhook"}, "behaviours": {"steady": 2}}
    text = render(summarize(sent, facts, check(sent, facts), [], run))
    assert "yet stored once: 1." in text
