"""Hosts on one machine: network namespaces joined by veth pairs to two switches.

A run owns a directory under RUNS_DIR and holds an exclusive lock on it while it lives. Its
namespaces are named after it (`hbst-<run>-<host>`) and its addresses exist only inside them,
so runs side by side never meet. A run directory found unlocked belongs to a run that crashed:
its processes are killed, its namespaces deleted and its directory removed. Each process's
output, and any file the test keeps for reading afterwards, goes to the run's `logs` folder,
which `close()` copies out before removing the rest.

Topology: a `switch` namespace holds two bridges, `front` (clients, app servers, monitors, the
alert sink) and `back` (app servers, monitors, the database host). Each host has one veth pair
per network it is on, so one link can be cut at the switch (the cable pulled: packets vanish,
connections stall until their timeouts) while the host's other link keeps working.
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
RUNS_DIR = Path(tempfile.gettempdir()) / "hbmon-systest"
NAMESPACE_PREFIX = "hbst-"
SUBNETS = {"front": "10.77.1", "back": "10.77.2"}


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def kill_namespace_processes(namespace: str, timeout_seconds: float = 10) -> None:
    """SIGKILL every process in the namespace, again until none is left (a parent may fork)."""
    deadline = time.monotonic() + timeout_seconds
    while pids := [int(pid) for pid in ip("netns", "pids", namespace).split()]:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} in {namespace} survive SIGKILL")
        time.sleep(0.05)


def wait_until(condition: Callable[[], Any], timeout_seconds: float, what: str) -> Any:
    """Poll `condition` until it is truthy; AssertionError naming `what` after the timeout."""
    deadline = time.monotonic() + timeout_seconds
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_seconds:g} s waiting for {what}")
        time.sleep(0.1)
    return result


class JsonLines:
    """A JSON-lines file another process appends to, read as it grows."""

    def __init__(self, path: Path):
        self.path = path
        self.records: list[dict] = []
        self._offset = 0

    def read(self) -> list[dict]:
        if self.path.exists():
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
            complete = data[:data.rfind(b"\n") + 1]  # a line being written waits for the next read
            self._offset += len(complete)
            self.records += [json.loads(line) for line in complete.splitlines()]
        return self.records


class Run:
    """This run's directory, lock and namespace names; `close()` removes all of it."""

    def __init__(self) -> None:
        RUNS_DIR.mkdir(parents=True, exist_ok=True)
        self.id = secrets.token_hex(4)
        self.directory = RUNS_DIR / self.id
        # One run at a time between cleaning and locking, so none takes another's for stale.
        with (RUNS_DIR / "setup.lock").open("w") as setup:
            fcntl.flock(setup, fcntl.LOCK_EX)
            clean_stale_runs()
            self.directory.mkdir()
            self.directory.chmod(0o755)  # the PostgreSQL server runs as `postgres`
            self.logs = self.directory / "logs"
            self.logs.mkdir()
            self._lock = os.open(self.directory / "lock", os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(self._lock, fcntl.LOCK_EX)

    def namespace(self, host: str) -> str:
        return f"{NAMESPACE_PREFIX}{self.id}-{host}"

    def close(self, keep_logs_in: Path) -> None:
        """Remove the run; its logs replace what `keep_logs_in` held."""
        remove_run(self.id, keep_logs_in)
        os.close(self._lock)


def remove_run(run_id: str, keep_logs_in: Path | None = None) -> None:
    """Kill the run's processes, delete its namespaces, remove its directory."""
    owned = [name for name in namespaces() if name.startswith(f"{NAMESPACE_PREFIX}{run_id}-")]
    for namespace in owned:
        kill_namespace_processes(namespace)
    for namespace in owned:
        ip("netns", "delete", namespace)
    if keep_logs_in is not None:
        shutil.rmtree(keep_logs_in, ignore_errors=True)
        shutil.copytree(RUNS_DIR / run_id / "logs", keep_logs_in)
    shutil.rmtree(RUNS_DIR / run_id, ignore_errors=True)


def clean_stale_runs() -> None:
    """Remove what crashed runs left; a run still alive holds its lock and is left alone."""
    for directory in RUNS_DIR.iterdir():
        try:
            lock = os.open(directory / "lock", os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        finally:
            os.close(lock)
        remove_run(directory.name)


class Host:
    """A network namespace with an address on each of its networks, and its processes."""

    def __init__(self, run: Run, name: str):
        self.run = run
        self.name = name
        self.namespace = run.namespace(name)
        self.addresses: dict[str, str] = {}
        self.processes: list[subprocess.Popen] = []

    def address(self, network: str = "front") -> str:
        return self.addresses[network]

    def spawn(self, argv: list[str], log_name: str, env: dict[str, str] | None = None,
              user: str | None = None) -> subprocess.Popen:
        """Start a process inside this host; its output goes to `<host>-<log_name>.log`."""
        prefix = ["runuser", "-u", user, "--"] if user else []
        log = (self.run.logs / f"{self.name}-{log_name}.log").open("ab")
        process = subprocess.Popen(["ip", "netns", "exec", self.namespace, *prefix, *argv],
                                   cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()  # the child holds its own copy
        self.processes.append(process)
        return process

    def kill(self) -> None:
        """The host dies: every process in it gets SIGKILL."""
        kill_namespace_processes(self.namespace)
        for process in self.processes:
            process.wait(10)  # reap our children
        self.processes = []


class Network:
    """The run's switch and hosts; `cut` and `restore` one host's link at the switch."""

    def __init__(self, run: Run):
        self.run = run
        self.switch = run.namespace("switch")
        ip("netns", "add", self.switch)
        for bridge in SUBNETS:
            ip("-n", self.switch, "link", "add", bridge, "type", "bridge")
            ip("-n", self.switch, "link", "set", bridge, "up")

    def add_host(self, name: str, **octets: int) -> Host:
        """A host with an address ending in `octet` on each network named: front=11, back=11."""
        host = Host(self.run, name)
        ip("netns", "add", host.namespace)
        ip("-n", host.namespace, "link", "set", "lo", "up")
        for network, octet in octets.items():
            port = self._port(host, network)
            ip("-n", self.switch, "link", "add", port, "type", "veth",
               "peer", "name", network, "netns", host.namespace)
            ip("-n", self.switch, "link", "set", port, "master", network, "up")
            host.addresses[network] = f"{SUBNETS[network]}.{octet}"
            ip("-n", host.namespace, "addr", "add", f"{host.addresses[network]}/24", "dev", network)
            ip("-n", host.namespace, "link", "set", network, "up")
        return host

    def cut(self, host: Host, network: str) -> None:
        ip("-n", self.switch, "link", "set", self._port(host, network), "down")

    def restore(self, host: Host, network: str) -> None:
        ip("-n", self.switch, "link", "set", self._port(host, network), "up")

    @staticmethod
    def _port(host: Host, network: str) -> str:
        return f"{host.name}-{network}"[:15]  # an interface name has at most 15 characters
