"""What happens to the system test's deployment while a client pings, and what it leaves.

The hosts are in tests/system/deployment.py; the timeline, each step waiting on a condition:

1. The client pings every application through both app hosts in turn.
2. While the sink holds the first alert, the monitor host dies (SIGKILL); `flask monitor`
   starts on both app hosts and takes over, the held alert among its work once the dead host
   has not been seen alive for 10 s (delivery_liveness.py).
3. app1's link to the database host is cut at the switch: its pings go to its spool. The link
   comes back and app1's monitor replays the spool.
4. app2 dies (SIGKILL): the client fails over to app1. app2 comes back and replays its spool.
5. Every incident's alerts are delivered. The flood host sends more pings than its
   per-client limit allows, over both app hosts. The client stops.

Meanwhile some applications go silent and some report a failure and recover, at different
steps, so that incidents open before, during and after each fault.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import Counter
from pathlib import Path

from app import create_app
from tests.conftest import close_app, make_key, migrate
from tests.system.deployment import FLOOD_PINGS, SINK_PORT, Deployment
from tests.system.hosts import JsonLines, wait_until

ROUND_SECONDS = 1.0
SINK_HOLD_SECONDS = 0.5
STEADY, SILENT, FAILING = 4, 3, 2


@dataclasses.dataclass
class Fleet:
    """The applications, by what the client does with them."""

    steady: list[str]  # pinged every round, whatever happens
    silent: list[str]  # pinged until a step of the timeline, then never again
    failing: list[str]  # report a failure at one step and recover at a later one
    flood_target: str  # pinged by the flood only (period one day)


@dataclasses.dataclass
class Outcome:
    """What the client, the flood and the sink saw, and what the database holds."""

    fleet: Fleet
    attempts: list[dict]  # every client request, one line each (agents.Pinger)
    flood_attempts: list[dict]
    deliveries: list[dict]  # every request the sink received
    stored_by_user_agent: Counter
    incidents: list[dict]  # oldest first: application, name, id, reason, started_at, resolved
    alerts: list[dict]  # uuid, event, state, incident_id, application
    figures: dict


def create_fleet(deployment: Deployment) -> Fleet:
    """Migrate the database and create the channel and applications through the API."""
    url = deployment.local_database_url
    migrate(url)
    app = create_app({"DATABASE_URL": url, "MONITOR_ENABLED": False, "LOG_FORMAT": "text",
                      "SPOOL_DIR": str(deployment.path("setup-spool")),
                      "ALLOW_PRIVATE_WEBHOOK_TARGETS": True})
    try:
        api = app.test_client()
        headers = {"Authorization": f"Bearer {make_key(app)}"}
        channel = api.post("/api/v1/channels", headers=headers, json={
            "name": "sink", "kind": "webhook", "url": deployment.sink_url}).get_json()

        def create(name: str, period_seconds: int, grace_seconds: int) -> str:
            response = api.post("/api/v1/applications", headers=headers, json={
                "name": name, "period_seconds": period_seconds, "grace_seconds": grace_seconds,
                "channels": [channel["id"]]})
            assert response.status_code == 201, response.get_data(as_text=True)
            return response.get_json()["uuid"]

        # A ping a second: a steady application has 8 s to get one stored, a silent one is
        # down 3 s after its last.
        return Fleet(steady=[create(f"steady-{n}", 4, 4) for n in range(STEADY)],
                     silent=[create(f"silent-{n}", 2, 1) for n in range(SILENT)],
                     failing=[create(f"failing-{n}", 4, 4) for n in range(FAILING)],
                     flood_target=create("flood-target", 86400, 3600))
    finally:
        close_app(app)


class Plan:
    """The client's instructions: a file it reads every round, rewritten whole by the test."""

    def __init__(self, path: Path, uuids: list[str]):
        self.path = path
        self.pings = {uuid: "" for uuid in uuids}
        self.stop = False
        self._write()

    def ping(self, uuid: str, signal: str = "") -> None:
        self.pings[uuid] = signal
        self._write()

    def go_silent(self, uuid: str) -> None:
        del self.pings[uuid]
        self._write()

    def finish(self) -> None:
        self.stop = True
        self._write()

    def _write(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"round_seconds": ROUND_SECONDS, "pings": self.pings,
                                         "stop": self.stop}))
        os.replace(temporary, self.path)


def run_scenario(deployment: Deployment) -> Outcome:
    """Deploy, run the timeline, and read what happened."""
    started = time.monotonic()
    deployment.start_database_host()
    timeline = Timeline(deployment, create_fleet(deployment))
    timeline.start()
    timeline.kill_the_monitor_host()
    timeline.cut_app1_from_the_database()
    timeline.kill_app2()
    timeline.settle_and_flood()
    timeline.figures["scenario_seconds"] = round(time.monotonic() - started, 1)
    return timeline.outcome()


class Timeline:
    """The steps of the module docstring, each ending on the condition that shows it done."""

    def __init__(self, deployment: Deployment, fleet: Fleet):
        self.deployment = deployment
        self.fleet = fleet
        self.app1_url, self.app2_url = deployment.app_urls
        self.plan = Plan(deployment.logs / "plan.json",
                         fleet.steady + fleet.silent + fleet.failing)
        self.attempts = JsonLines(deployment.logs / "client.jsonl")
        self.flood_attempts = JsonLines(deployment.logs / "flood.jsonl")
        self.deliveries = JsonLines(deployment.logs / "sink.jsonl")
        self.client = None
        self.figures: dict = {}

    def answered(self, uuid=None, signal="ok", host=None, since=0.0) -> list[dict]:
        return [a for a in self.attempts.read() if a["status"] is not None and a["status"] < 300
                and a["signal"] == signal and (uuid is None or a["uuid"] == uuid)
                and (host is None or a["host"] == host) and a["sent_at"] >= since]

    def report_failure(self, uuid: str) -> None:
        """The application reports a failure (an incident opens), then succeeds again."""
        self.plan.ping(uuid, "fail")
        wait_until(lambda: self.answered(uuid, "fail"), 30, "a failure reported")
        self.plan.ping(uuid)

    def start(self) -> None:
        """1. Every host up; the client pings through both app hosts."""
        deployment = self.deployment
        deployment.sink.spawn(deployment.agent("sink", str(SINK_PORT), str(self.deliveries.path),
                                               str(SINK_HOLD_SECONDS)), "sink")
        wait_until(self.deliveries.path.exists, 30, "the alert sink")
        for host in (deployment.app1, deployment.app2):
            deployment.start_app_server(host)
        deployment.start_monitor(deployment.monitor)
        self.client = deployment.client.spawn(deployment.agent(
            "client", ",".join(deployment.app_urls), str(self.plan.path),
            str(self.attempts.path)), "client")
        wait_until(lambda: self.answered(host=self.app1_url) and self.answered(host=self.app2_url),
                   90, "the client's first pings answered by both app hosts")

    def kill_the_monitor_host(self) -> None:
        """2. The monitor host dies while the sink holds its first alert; monitors start on
        both app hosts."""
        deployment = self.deployment
        self.plan.go_silent(self.fleet.silent[0])
        self.report_failure(self.fleet.failing[0])
        wait_until(self.deliveries.read, 60, "the first alert at the sink")
        deployment.monitor.kill()
        killed_at = time.monotonic()
        self.figures["alerts_at_the_sink_when_the_monitor_host_died"] = \
            len(self.deliveries.read())
        for host in (deployment.app1, deployment.app2):
            deployment.start_monitor(host)
        wait_until(lambda: all(map(deployment.monitor_running, (deployment.app1, deployment.app2))),
                   60, "flask monitor on both app hosts")
        self.figures["monitors_on_app_hosts_after_seconds"] = round(time.monotonic() - killed_at, 1)
        self.plan.go_silent(self.fleet.silent[1])

    def cut_app1_from_the_database(self) -> None:
        """3. app1's link to PostgreSQL and Redis is cut: it spools; app2's monitor still judges
        (an application going silent now is alerted). Restored, app1's monitor replays."""
        deployment, silent = self.deployment, self.fleet.silent[2]
        deployment.network.cut(deployment.app1, "back")
        self.plan.go_silent(silent)
        wait_until(lambda: deployment.spooled(deployment.app1) >= 10, 60, "app1 spooling pings")
        wait_until(lambda: deployment.query(
            "SELECT i.id FROM incidents i JOIN applications a ON a.id = i.application_id "
            "WHERE a.uuid = %s", (silent,)), 60,
                   "an incident opened while app1 is cut off")
        self.figures["spooled_by_app1"] = deployment.spooled(deployment.app1)
        deployment.network.restore(deployment.app1, "back")
        restored_at = time.monotonic()
        wait_until(lambda: deployment.spooled(deployment.app1) == 0, 60, "app1's spool replayed")
        self.figures["app1_spool_replayed_after_seconds"] = \
            round(time.monotonic() - restored_at, 1)

    def kill_app2(self) -> None:
        """4. app2 dies: the client fails over to app1. Then app2 comes back."""
        deployment = self.deployment
        self.report_failure(self.fleet.failing[1])
        deployment.app2.kill()
        killed_at = time.time()
        wait_until(lambda: len(self.answered(host=self.app1_url, since=killed_at))
                   >= 3 * len(self.plan.pings), 60, "three rounds answered by app1 alone")
        deployment.start_app_server(deployment.app2)
        deployment.start_monitor(deployment.app2)
        restarted_at = time.time()
        wait_until(lambda: self.answered(host=self.app2_url, since=restarted_at), 90,
                   "app2 answering again")
        self.figures["app2_answering_again_after_seconds"] = round(time.time() - restarted_at, 1)

    def settle_and_flood(self) -> None:
        """5. Every incident's alerts delivered; the flood; then the client stops. (Until the
        database is read, the client keeps pinging what kept its schedule.)"""
        deployment = self.deployment
        started = time.monotonic()
        if _wait_quietly(lambda: _settled(deployment, self.fleet, self.deliveries), 120):
            self.figures["alerts_settled_after_seconds"] = round(time.monotonic() - started, 1)
        flood = deployment.flood.spawn(deployment.agent(
            "flood", ",".join(deployment.app_urls), self.fleet.flood_target, str(FLOOD_PINGS),
            str(self.flood_attempts.path)), "flood")
        flood.wait(120)
        self.plan.finish()
        self.client.wait(30)

    def outcome(self) -> Outcome:
        query = self.deployment.query
        stored = Counter(dict(query("SELECT user_agent, count(*) FROM heartbeats "
                                    "GROUP BY user_agent")))
        incidents = [dict(zip(("application", "name", "id", "reason", "started_at", "resolved"),
                              row)) for row in query(
            "SELECT a.uuid, a.name, i.id, i.reason, i.started_at, i.resolved_at IS NOT NULL "
            "FROM incidents i JOIN applications a ON a.id = i.application_id ORDER BY i.id")]
        alerts = [dict(zip(("uuid", "event", "state", "incident_id", "application"), row))
                  for row in query("SELECT al.uuid, al.event, al.state, al.incident_id, a.uuid "
                                   "FROM alerts al JOIN applications a "
                                   "ON a.id = al.application_id")]
        return Outcome(self.fleet, self.attempts.read(), self.flood_attempts.read(),
                       self.deliveries.read(), stored, incidents, alerts, self.figures)


def counted_figures(outcome: Outcome) -> dict:
    """What the run amounted to, beside the timeline's own figures."""
    arrivals: dict[str, list[float]] = {}
    for delivery in outcome.deliveries:
        arrivals.setdefault(delivery["idempotency_key"], []).append(delivery["received_at"])
    return {
        "client_pings_answered": sum(1 for a in outcome.attempts
                                     if a["status"] is not None and a["status"] < 300),
        "client_attempts_failed": sum(1 for a in outcome.attempts
                                      if a["status"] is None or a["status"] >= 500),
        "slowest_answer_seconds": max(a["seconds"] for a in outcome.attempts),
        "heartbeats_stored": sum(outcome.stored_by_user_agent.values()),
        "alerts": len(outcome.alerts),
        "silent_applications_down_twice": sorted(
            name for name, n in Counter(i["name"] for i in outcome.incidents
                                        if i["application"] in outcome.fleet.silent).items()
            if n > 1),
        "alerts_resent_after_seconds": [round(times[-1] - times[0], 1)
                                        for times in arrivals.values() if len(times) > 1],
        "flood_answers": dict(Counter(str(a["status"]) for a in outcome.flood_attempts)),
    }


def _wait_quietly(condition, timeout_seconds: float) -> bool:
    """Like wait_until, but a timeout is left for the checks to report."""
    try:
        wait_until(condition, timeout_seconds, "")
        return True
    except AssertionError:
        return False


def _settled(deployment: Deployment, fleet: Fleet, sink_log: JsonLines) -> bool:
    """No spool holds a heartbeat, every expected incident is there, no alert waits."""
    if any(deployment.spooled(host) for host in (deployment.app1, deployment.app2)):
        return False
    (open_incidents, resolved_incidents), = deployment.query(
        "SELECT count(*) FILTER (WHERE resolved_at IS NULL), "
        "count(*) FILTER (WHERE resolved_at IS NOT NULL) FROM incidents")
    states = dict(deployment.query("SELECT uuid, state FROM alerts"))
    received = {delivery["idempotency_key"] for delivery in sink_log.read()}
    return open_incidents >= len(fleet.silent) and resolved_incidents >= len(fleet.failing) \
        and set(states.values()) == {"delivered"} and set(states) <= received
