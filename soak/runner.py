"""The soak from start to end: set up, load under faults, recover, drain, stop, check, report.

The app is served by gunicorn against a PostgreSQL database created for the run, reached
through a fault-injecting proxy; `flask monitor` runs apart with a short interval; three sinks
(two webhooks, one Slack-style) take the alerts. Faults run on a seeded schedule while the
load runs; then every application keeps its schedule, the soak waits until every incident is
resolved, every alert delivered and the spool empty, stops everything with SIGTERM and checks.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import random
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from sqlalchemy.engine import make_url

from soak.checker import Verdict, check
from soak.environment import SoakDatabase, SpoolDisk, flask_command, through_proxy
from soak.facts import read_facts
from soak.fault_schedule import (
    Fault,
    FaultScheduler,
    Targets,
    database_lost_in_flight,
    fault_in_effect,
    plan_faults,
)
from soak.load import LoadGenerator, SoakApplication, plan_applications
from soak.report import render, summarize
from tests.faults import ROOT, ChaosProxy, MonitorProcess, ServerProcess
from tests.sinks import HttpSink

# Kinds of the three channels; every application is on the first two, a third on "chat".
CHANNELS = {"ops": "webhook", "team": "webhook", "chat": "slack"}
SPOOL_DISK_BYTES = 4 * 1024 * 1024
RECOVERY_SECONDS = 15.0
DRAIN_TIMEOUT_SECONDS = 180.0
ALERT_TIMEOUT_SECONDS = 2.0
# Short intervals and periods, so that incidents, outage gaps and breakers really happen.
SERVICE_SETTINGS = {
    "MONITOR_INTERVAL_SECONDS": "0.5", "OUTAGE_GAP_SECONDS": "3",
    "ALERT_TIMEOUT_SECONDS": str(ALERT_TIMEOUT_SECONDS), "BREAKER_RECOVERY_SECONDS": "5",
    "ALLOW_PRIVATE_WEBHOOK_TARGETS": "1",  # the sinks listen on loopback
    # The load comes from one address, far faster than cron jobs; limits are not under test.
    "PING_RATE_LIMIT": "1000000/minute", "PING_CLIENT_RATE_LIMIT": "1000000/minute",
    "API_RATE_LIMIT": "1000000/minute",
}


@dataclasses.dataclass
class Options:
    minutes: float
    seed: int
    applications: int
    workers: int
    database_url: str
    gap_seconds: tuple[float, float]
    keep_database: bool


def say(line: str) -> None:
    print(line, flush=True)


def create_channels_and_applications(base_url: str, api_key: str, sinks: dict[str, HttpSink],
                                     applications: list[SoakApplication]) -> None:
    """Through the API, as an operator would."""
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {api_key}"
    channel_ids = {}
    for name, kind in CHANNELS.items():
        fields = {"name": name, "kind": kind, "url": sinks[name].url}
        if name == "ops":
            fields["secret"] = secrets.token_hex(16)
        response = api.post(base_url + "/api/v1/channels", json=fields, timeout=30)
        response.raise_for_status()
        channel_ids[name] = response.json()["id"]
    for application in applications:
        response = api.post(base_url + "/api/v1/applications", timeout=30, json={
            "name": application.name, **application.schedule,
            "channels": [channel_ids[name] for name in application.channel_names]})
        response.raise_for_status()
        application.uuid = response.json()["uuid"]


def _scalar(database: SoakDatabase, statement: str) -> int:
    connection = database.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            return cursor.fetchone()[0]
    finally:
        connection.close()


def wait_for_drain(database: SoakDatabase, disk: SpoolDisk, timeout_seconds: float) -> str:
    """Until no incident is open, no alert pending and the spool empty; what is left if not."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        open_incidents = _scalar(database, "SELECT count(*) FROM incidents "
                                           "WHERE resolved_at IS NULL")
        pending = _scalar(database, "SELECT count(*) FROM alerts WHERE state = 'pending'")
        spooled = sum(disk.spool_files().values())
        left = (f"{open_incidents} open incidents, {pending} pending alerts, "
                f"{spooled} bytes spooled")
        if (open_incidents, pending, spooled) == (0, 0, 0) or time.monotonic() > deadline:
            return left
        time.sleep(1.0)


class Soak:
    """One run: `run()` sets up, loads under faults, recovers, drains, stops, checks."""

    def __init__(self, options: Options):
        self.options = options
        self.rng = random.Random(options.seed)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.run_dir = ROOT / "instance" / "soak" / f"{stamp}-seed{options.seed}"
        self.disk = SpoolDisk(Path(tempfile.mkdtemp(prefix="hbmon-soak-")), SPOOL_DISK_BYTES)
        self.database = SoakDatabase(options.database_url)
        admin = make_url(options.database_url)
        self.proxy = ChaosProxy(admin.host or "127.0.0.1", admin.port or 5432)
        self.sinks = {name: HttpSink().start() for name in CHANNELS}
        self.server: ServerProcess | None = None
        self.monitor: MonitorProcess | None = None
        self.api_key = ""

    def run(self) -> bool:
        """True when every invariant holds."""
        try:
            applications = self.start_service()
            plan = plan_faults(self.rng, self.options.minutes * 60, list(CHANNELS),
                               gap_seconds=self.options.gap_seconds,
                               disk_full=self.disk.mounted)
            say(f"seed {self.options.seed}: {len(applications)} applications, "
                f"{self.options.workers} workers, {self.options.minutes * 60:.0f} s of load; "
                f"run files in {self.run_dir}")
            say("fault plan:\n" + "\n".join(f"  +{fault.at:6.1f} s  {fault.describe()}"
                                            for fault in plan))
            load = self.load_under_faults(applications, plan)
            exit_codes = self.recover_and_stop(load)
            return self.check(applications, load, plan, exit_codes)
        finally:
            self.tear_down()

    def start_service(self) -> list[SoakApplication]:
        """Database, migrations, a key, gunicorn and the monitor; channels and applications."""
        if not self.disk.mount().mounted:
            say(f"no spool disk of its own ({self.disk.failure or 'mount failed'}): the "
                "disk-full fault is left out (run as root to include it)")
        self.database.create()
        (self.run_dir / "prometheus").mkdir(parents=True, exist_ok=True)
        settings = {**SERVICE_SETTINGS, "SPOOL_DIR": str(self.disk.spool_dir),
                    "SECRET_KEY": secrets.token_hex(32), "LOG_FORMAT": "text",
                    "PROMETHEUS_MULTIPROC_DIR": str(self.run_dir / "prometheus")}
        direct = {**settings, "DATABASE_URL": self.database.url}
        flask_command(direct, "db", "upgrade")
        self.api_key = flask_command(direct, "api-key", "create",
                                     "soak").strip().splitlines()[-1]
        proxied = {**settings, "DATABASE_URL": through_proxy(self.database.url, self.proxy.port)}
        self.server = ServerProcess({**proxied, "MONITOR_ENABLED": "0"},
                                    workers=self.options.workers, threads=8).start()
        self.monitor = MonitorProcess(proxied).start()
        applications = plan_applications(self.options.applications, list(CHANNELS), self.rng)
        create_channels_and_applications(self.server.url, self.api_key, self.sinks,
                                         applications)
        return applications

    def load_under_faults(self, applications: list[SoakApplication],
                          plan: list[Fault]) -> LoadGenerator:
        started = time.monotonic()
        load = LoadGenerator(self.server.url, applications, self.api_key, self.options.seed,
                             started).start()
        steady = [application for application in applications
                  if application.behaviour == "steady"]
        scheduler = FaultScheduler(plan, Targets(
            self.proxy, self.sinks, self.server, self.monitor, self.disk, load, steady,
            ALERT_TIMEOUT_SECONDS), started, say).start()
        time.sleep(max(0.0, started + self.options.minutes * 60 - time.monotonic()))
        scheduler.finish()
        return load

    def recover_and_stop(self, load: LoadGenerator) -> dict[str, int]:
        """Every application keeps its schedule until all is drained; then SIGTERM."""
        say(f"[{load.now():6.1f} s] faults over; every application keeps its schedule now")
        load.recover()
        time.sleep(RECOVERY_SECONDS)
        left = wait_for_drain(self.database, self.disk, DRAIN_TIMEOUT_SECONDS)
        say(f"[{load.now():6.1f} s] drained: {left}")
        load.stop()
        wait_for_drain(self.database, self.disk, 10)  # what the last requests spooled, if any
        return {"monitor": self.monitor.stop(), "server": self.server.stop()}

    def check(self, applications: list[SoakApplication], load: LoadGenerator,
              plan: list[Fault], exit_codes: dict[str, int]) -> bool:
        connection = self.database.connect()
        try:
            facts = read_facts(connection, self.sinks, self.disk.spool_files(), exit_codes)
        finally:
            connection.close()
        for sent in load.sent:
            sent.during = fault_in_effect(plan, sent.at, sent.at + sent.seconds)
            sent.database_lost = database_lost_in_flight(plan, sent.at, sent.at + sent.seconds)
        verdict = check(load.sent, facts)
        summary = summarize(load.sent, facts, verdict, plan, {
            "minutes": self.options.minutes, "seed": self.options.seed,
            "applications": len(applications), "workers": self.options.workers,
            "channels": CHANNELS,
            "behaviours": dict(collections.Counter(a.behaviour for a in applications))})
        text = render(summary)
        self.write_run_files(summary, text, verdict, load, plan)
        say(text)
        return verdict.holds

    def write_run_files(self, summary: dict[str, Any], text: str, verdict: Verdict,
                        load: LoadGenerator, plan: list[Fault]) -> None:
        """The summary, every violation, every request and fault, and the processes' logs."""
        run_dir = self.run_dir
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        (run_dir / "summary.txt").write_text(text + "\n")
        (run_dir / "violations.txt").write_text("".join(
            f"{name}: {violation}\n" for name, found in verdict.violations.items()
            for violation in found))
        with open(run_dir / "requests.jsonl", "w") as handle:
            for sent in load.sent:
                handle.write(json.dumps(dataclasses.asdict(sent)) + "\n")
        (run_dir / "faults.json").write_text(json.dumps(
            [dataclasses.asdict(fault) for fault in plan], indent=2))
        for name, process in (("server", self.server), ("monitor", self.monitor)):
            process.log.seek(0)
            (run_dir / f"{name}.log").write_bytes(process.log.read())

    def tear_down(self) -> None:
        for process in (self.monitor, self.server):
            if process is not None and process.process is not None \
                    and process.process.poll() is None:
                process.process.kill()
        self.proxy.close()
        for sink in self.sinks.values():
            sink.stop()
        if self.options.keep_database:
            say(f"database kept: {self.database.name}")
        else:
            self.database.drop()
        self.disk.unmount()
        shutil.rmtree(self.disk.mount_point, ignore_errors=True)


def run(options: Options) -> bool:
    """Run the soak; True when every invariant holds."""
    return Soak(options).run()
