"""What every benchmark shares: a throwaway PostgreSQL database, servers, result lines."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import psycopg2
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# The service as the benchmarks run it: quiet, no monitor in the serving process, and ping
# limits far above the load (every ping is still counted against them).
SERVER_ENVIRONMENT = {
    "MONITOR_ENABLED": "0", "LOG_LEVEL": "WARNING", "LOG_FORMAT": "text",
    "PING_RATE_LIMIT": "100000000/minute", "PING_CLIENT_RATE_LIMIT": "100000000/minute",
    "ALLOW_PRIVATE_WEBHOOK_TARGETS": "1", "SECRET_KEY": "bench-secret-key",
}


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def connect(url: str):
    """A psycopg2 connection in autocommit to the database at `url` (a SQLAlchemy URL)."""
    connection = psycopg2.connect(_dsn(url))
    connection.autocommit = True
    return connection


def _admin():
    return connect(ADMIN_URL)


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    """A fresh database migrated by `flask db upgrade`, dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with contextlib.closing(_admin()) as connection, connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        subprocess.run([str(BIN / "flask"), "--app", "app", "db", "upgrade"], cwd=ROOT,
                       env=server_environment(url), check=True, capture_output=True)
        yield url
    finally:
        # An app made in this process bounds every PostgreSQL wait (database.install_io_timeout);
        # dropping a database can take longer on a busy machine, and must not lose the results.
        psycopg2.extensions.set_wait_callback(None)
        with contextlib.closing(_admin()) as connection, connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hbmon-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def server_environment(database_url: str, **extra: str) -> dict[str, str]:
    environment = {**os.environ, **SERVER_ENVIRONMENT, "DATABASE_URL": database_url}
    environment.update(extra)
    return environment


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout_seconds:g} s")


@contextlib.contextmanager
def gunicorn(app_spec: str, environment: dict[str, str], workers: int, threads: int,
             log_path: Path, pythonpath: str | None = None,
             extra_args: list[str] | None = None,
             cwd: str | Path = ROOT) -> Iterator[tuple[int, subprocess.Popen]]:
    """gunicorn with the project's config file, serving the code in `cwd`; yields (port,
    master process)."""
    port = free_port()
    command = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--workers", str(workers),
               "--threads", str(threads), "--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
    if pythonpath:
        command += ["--pythonpath", pythonpath]
    command += extra_args or []
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command + [app_spec], cwd=cwd, env=environment,
                                   stdout=log, stderr=log)
    try:
        wait_for_port(port)
        yield port, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def worker_pids(master_pid: int) -> list[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return [int(pid) for pid in children]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def per_batch_costs(write, batches: list, backend_pid: int) -> tuple[float, float, float]:
    """write() each batch in turn; per batch, in microseconds: wall time, CPU of this process
    and CPU of the PostgreSQL backend `backend_pid`."""
    wall, cpu, server = time.perf_counter(), time.process_time(), process_cpu_seconds(backend_pid)
    for batch in batches:
        write(batch)
    costs = (time.perf_counter() - wall, time.process_time() - cpu,
             process_cpu_seconds(backend_pid) - server)
    return tuple(1e6 * cost / len(batches) for cost in costs)


def print_server_log_errors(log_path: Path) -> None:
    """Say whether the servers' log holds errors (a benchmark's figures may hide them)."""
    errors = [line for line in log_path.read_text().splitlines()
              if "Traceback" in line or "ERROR" in line]
    if errors:
        print(f"  server log: {len(errors)} error lines, first: {errors[0]}")


def median(values: list[float]) -> float:
    return statistics.median(values)


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def report(target: str, line: str, passed: bool) -> bool:
    """One result line, as BENCHMARKS.md quotes it."""
    print(f"[{verdict(passed)}] {target}: {line}", flush=True)
    return passed


def machine() -> str:
    return f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start"
