"""Faults on a seeded schedule, one at a time, each recorded with when it ran and what it did.

Kinds: the database cut, stalled or slowed (through tests/faults.ChaosProxy); an alert sink
answering 5xx, 429 with Retry-After, or hanging past the delivery timeout (the next few
deliveries it gets); a gunicorn worker or the monitor killed with SIGKILL (the monitor is
restarted after a few seconds, gunicorn respawns its worker); slow clients dribbling bodies,
half of them cut off; the spool's disk filled up with a ballast file while the database is cut,
then freed.
"""
from __future__ import annotations

import dataclasses
import os
import random
import signal
import threading
import time
from typing import Any, Callable

from soak.environment import SpoolDisk, gunicorn_workers
from soak.load import LoadGenerator, SoakApplication
from soak.slow_clients import slow_clients
from tests.faults import ChaosProxy, MonitorProcess, ServerProcess
from tests.sinks import HttpSink

FAULT_KINDS = ("db_cut", "db_stall", "db_slow", "sink_5xx", "sink_429", "sink_hang",
               "worker_kill", "monitor_kill", "slow_clients", "disk_full")
# Faults that take the database away; disk_full cuts it too (its spool fills meanwhile).
DATABASE_FAULTS = ("db_cut", "db_stall", "disk_full")
WARM_UP_SECONDS = 8.0
SLOW_CLIENTS = 30


@dataclasses.dataclass
class Fault:
    at: float  # seconds after the load started
    kind: str
    seconds: float  # how long it lasts; 0 for a kill or a scripted sink answer
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)
    started: float | None = None
    ended: float | None = None
    outcome: str = ""

    def describe(self) -> str:
        detail = ", ".join(f"{name}={value}" for name, value in self.detail.items())
        lasting = f" for {self.seconds:.1f} s" if self.seconds else ""
        return f"{self.kind}{lasting}" + (f" ({detail})" if detail else "")


def _planned(rng: random.Random, kind: str, at: float, sinks: list[str]) -> Fault:
    if kind == "db_cut":
        return Fault(at, kind, round(rng.uniform(3, 6), 1))
    if kind == "db_stall":
        return Fault(at, kind, round(rng.uniform(2, 4), 1))
    if kind == "db_slow":
        return Fault(at, kind, round(rng.uniform(3, 5), 1),
                     {"delay_ms": rng.choice([50, 100, 200])})
    if kind == "sink_5xx":
        return Fault(at, kind, 0, {"sink": rng.choice(sinks),
                                   "answers": [rng.choice([500, 502, 503])
                                               for _ in range(rng.randint(3, 6))]})
    if kind == "sink_429":
        return Fault(at, kind, 0, {"sink": rng.choice(sinks), "count": rng.randint(2, 3),
                                   "retry_after": rng.randint(1, 3)})
    if kind == "sink_hang":
        return Fault(at, kind, 0, {"sink": rng.choice(sinks), "count": rng.randint(1, 2)})
    if kind == "monitor_kill":
        return Fault(at, kind, round(rng.uniform(2, 5), 1))
    if kind == "slow_clients":
        return Fault(at, kind, round(rng.uniform(4, 8), 1), {"connections": SLOW_CLIENTS})
    if kind == "disk_full":
        return Fault(at, kind, round(rng.uniform(3, 5), 1))
    return Fault(at, kind, 0)  # worker_kill


def plan_faults(rng: random.Random, load_seconds: float, sinks: list[str], *,
                gap_seconds: tuple[float, float], disk_full: bool) -> list[Fault]:
    """Faults from WARM_UP_SECONDS until shortly before the load ends: every kind once in a
    shuffled order, then again, and so on."""
    kinds = [kind for kind in FAULT_KINDS if disk_full or kind != "disk_full"]
    plan: list[Fault] = []
    deck: list[str] = []
    at = WARM_UP_SECONDS
    while True:
        deck = deck or rng.sample(kinds, len(kinds))
        fault = _planned(rng, deck.pop(), round(at, 1), sinks)
        if fault.at + fault.seconds > load_seconds - 3:
            return plan
        plan.append(fault)
        at = fault.at + fault.seconds + rng.uniform(*gap_seconds)


def fault_in_effect(faults: list[Fault], sent_at: float, answered_at: float) -> str | None:
    """The fault that acted while a request was in flight (a kill: for the second after it),
    if any; sink faults act on deliveries, not requests."""
    numbers: dict[str, int] = {}
    for fault in faults:
        numbers[fault.kind] = numbers.get(fault.kind, 0) + 1
        if fault.started is None or fault.kind.startswith("sink_"):
            continue
        if fault.started <= answered_at and sent_at <= max(fault.ended or fault.started,
                                                           fault.started + 1):
            return f"{fault.kind} #{numbers[fault.kind]} (+{fault.started:.1f} s)"
    return None


def database_lost_in_flight(faults: list[Fault], sent_at: float, answered_at: float) -> bool:
    """Whether the database went away while a request was in flight: its commit may have
    reached PostgreSQL with the answer lost on the way back."""
    return any(fault.kind in DATABASE_FAULTS and fault.started is not None
               and sent_at <= fault.started <= answered_at for fault in faults)


@dataclasses.dataclass
class Targets:
    """What the faults act on."""

    proxy: ChaosProxy
    sinks: dict[str, HttpSink]
    server: ServerProcess
    monitor: MonitorProcess
    disk: SpoolDisk
    load: LoadGenerator
    slow_client_targets: list[SoakApplication]
    alert_timeout_seconds: float


class FaultScheduler:
    """Runs the plan in a thread; `finish()` undoes whatever is still in effect."""

    def __init__(self, plan: list[Fault], targets: Targets, started_at: float,
                 say: Callable[[str], None] = print):
        self.plan = plan
        self.targets = targets
        self.started_at = started_at
        self.say = say
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="soak-faults")

    def start(self) -> "FaultScheduler":
        self.thread.start()
        return self

    def now(self) -> float:
        return time.monotonic() - self.started_at

    def _run(self) -> None:
        for fault in self.plan:
            if self.stopping.wait(max(0.0, fault.at - self.now())):
                return
            fault.started = self.now()
            try:
                fault.outcome = getattr(self, f"_{fault.kind}")(fault) or "done"
            except Exception as error:  # a fault that could not be injected is reported
                fault.outcome = f"not injected: {type(error).__name__}: {error}"
            fault.ended = self.now()
            self.say(f"[{fault.started:6.1f} s] {fault.describe()}: {fault.outcome}")

    def finish(self) -> None:
        """Stop injecting and put everything back: database, sinks, disk, monitor."""
        self.stopping.set()
        self.thread.join(60)
        targets = self.targets
        targets.proxy.restore()
        for sink in targets.sinks.values():
            with sink.lock:
                sink.script.clear()
        if targets.disk.mounted:
            targets.disk.free()
        if targets.monitor.process.poll() is not None:
            targets.monitor.start()

    def _hold(self, seconds: float) -> None:
        self.stopping.wait(seconds)

    # --- one method per kind ----------------------------------------------------------------

    def _db_cut(self, fault: Fault) -> str:
        self.targets.proxy.cut()
        self._hold(fault.seconds)
        self.targets.proxy.restore()
        return "database back"

    def _db_stall(self, fault: Fault) -> str:
        self.targets.proxy.stall()
        self._hold(fault.seconds)
        self.targets.proxy.restore()
        return "database back"

    def _db_slow(self, fault: Fault) -> str:
        self.targets.proxy.slow(fault.detail["delay_ms"] / 1000)
        self._hold(fault.seconds)
        self.targets.proxy.restore()
        return "database back"

    def _sink_5xx(self, fault: Fault) -> str:
        self.targets.sinks[fault.detail["sink"]].then(*fault.detail["answers"])
        return "queued for its next deliveries"

    def _sink_429(self, fault: Fault) -> str:
        answer = {"status": 429, "headers": {"Retry-After": str(fault.detail["retry_after"])}}
        self.targets.sinks[fault.detail["sink"]].then(*[answer] * fault.detail["count"])
        return "queued for its next deliveries"

    def _sink_hang(self, fault: Fault) -> str:
        # It takes the alert after the sender gave up: the sender must try again, and the
        # receiver sees that alert's Idempotency-Key twice.
        answer = {"status": 200, "hang": self.targets.alert_timeout_seconds + 1}
        self.targets.sinks[fault.detail["sink"]].then(*[answer] * fault.detail["count"])
        return "queued for its next deliveries"

    def _worker_kill(self, fault: Fault) -> str:
        workers = gunicorn_workers(self.targets.server.process.pid)
        if not workers:
            return "not injected: no worker found"
        victim = random.Random(fault.at).choice(workers)
        os.kill(victim, signal.SIGKILL)
        return f"killed worker {victim} of {len(workers)}"

    def _monitor_kill(self, fault: Fault) -> str:
        monitor = self.targets.monitor
        victim = monitor.process.pid
        monitor.kill()
        self._hold(fault.seconds)
        monitor.start()
        return f"killed monitor {victim}, restarted as {monitor.process.pid}"

    def _slow_clients(self, fault: Fault) -> str:
        server = self.targets.server
        results = slow_clients(self.targets.load, "127.0.0.1", server.port,
                               self.targets.slow_client_targets, fault.detail["connections"],
                               fault.seconds)
        complete = [sent for sent in results if not sent.cut_off]
        answered = sum(1 for sent in complete if sent.answered_2xx)
        return (f"{len(results) - len(complete)} cut off, "
                f"{answered}/{len(complete)} complete ones answered 2xx")

    def _disk_full(self, fault: Fault) -> str:
        disk = self.targets.disk
        ballast = disk.fill()
        self.targets.proxy.cut()
        self._hold(fault.seconds)
        self.targets.proxy.restore()
        self._hold(1.0)
        disk.free()
        return f"spool disk filled ({ballast} bytes of ballast) while the database was cut"
