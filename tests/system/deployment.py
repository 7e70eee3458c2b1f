"""The system test's deployment: which host runs what, with which settings.

db: a PostgreSQL cluster of the run's own and Redis, on the back network. app1, app2: gunicorn
(MONITOR_ENABLED=0), each with its own spool; `flask monitor` beside it once started there.
monitor: `flask monitor`. sink: the alert destination. client, flood: two client addresses.
The test process reaches the database through the server's Unix socket in the run directory.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import psycopg2
import redis

from spool import Spool
from tests.system.hosts import SUBNETS, Host, Network, Run, wait_until

APP_PORT, SINK_PORT = 8000, 8080
APP_WORKERS = 2  # gunicorn workers per app host
# The client sends a ping a second per application, well under its limit; the flood sends more
# than its limit within one window.
CLIENT_LIMIT_PER_MINUTE = 900
FLOOD_PINGS = 1200
HOST_SETTINGS = {
    "MONITOR_INTERVAL_SECONDS": "0.5",
    "PING_CLIENT_RATE_LIMIT": f"{CLIENT_LIMIT_PER_MINUTE}/minute",
    "PING_RATE_LIMIT": f"{2 * FLOOD_PINGS}/minute",  # the per-client limit is the one tested
    "ALERT_TIMEOUT_SECONDS": "2",  # a held alert's lease is 3 timeouts + 30 s
    "ALLOW_PRIVATE_WEBHOOK_TARGETS": "1",  # the sink's address is private
    "SECRET_KEY": "system-test",
    "LOG_FORMAT": "text",
    "LOG_LEVEL": "INFO",
}


class Deployment:
    """The hosts and the processes on them."""

    def __init__(self, run: Run):
        self.run = run
        self.logs = run.logs
        network = self.network = Network(run)
        self.db = network.add_host("db", back=10)
        self.app1 = network.add_host("app1", front=11, back=11)
        self.app2 = network.add_host("app2", front=12, back=12)
        self.monitor = network.add_host("monitor", front=20, back=20)
        self.sink = network.add_host("sink", front=30)
        self.client = network.add_host("client", front=40)
        self.flood = network.add_host("flood", front=41)
        self.postgres_socket_dir = run.directory / "postgres-socket"
        self.app_urls = [f"http://{host.address()}:{APP_PORT}" for host in (self.app1, self.app2)]
        self.sink_url = f"http://{self.sink.address()}:{SINK_PORT}/hook"

    def path(self, name: str) -> Path:
        return self.run.directory / name

    @property
    def local_database_url(self) -> str:
        """The database, for this process: through the server's socket in the run directory."""
        return f"postgresql://postgres@/hbmon?host={self.postgres_socket_dir}"

    def start_database_host(self) -> None:
        """A PostgreSQL cluster of this run's own, and Redis, listening on the back network."""
        data = self.path("postgres")
        for directory in (data, self.postgres_socket_dir):
            directory.mkdir()
            shutil.chown(directory, "postgres", "postgres")
        run_as_postgres([str(postgres_bin() / "initdb"), "-D", str(data), "--auth=trust",
                         "--username=postgres", "--no-sync"])
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {SUBNETS['back']}.0/24 trust\n")
        # fsync off: this cluster is thrown away, and the test never crashes PostgreSQL.
        self.db.spawn([str(postgres_bin() / "postgres"), "-D", str(data),
                       "-c", f"listen_addresses={self.db.address('back')}",
                       "-c", f"unix_socket_directories={self.postgres_socket_dir}",
                       "-c", "fsync=off"], "postgres", user="postgres")
        redis_socket = self.path("redis.sock")
        self.db.spawn(["redis-server", "--bind", self.db.address("back"), "--port", "6379",
                       "--unixsocket", str(redis_socket), "--save", "", "--appendonly", "no",
                       "--protected-mode", "no", "--dir", str(self.run.directory)], "redis")
        admin_url = f"host={self.postgres_socket_dir} user=postgres dbname=postgres"
        wait_until(lambda: _answers(lambda: psycopg2.connect(admin_url).close()), 60,
                   "PostgreSQL on the database host")
        connection = psycopg2.connect(admin_url)
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE hbmon")
        connection.close()
        wait_until(lambda: _answers(redis.Redis(unix_socket_path=str(redis_socket)).ping), 30,
                   "Redis on the database host")

    def host_env(self, host: Host, **settings: str) -> dict[str, str]:
        backend = self.db.address("back")
        return {**os.environ, **HOST_SETTINGS,
                "DATABASE_URL": f"postgresql://postgres@{backend}:5432/hbmon",
                "RATE_LIMIT_STORAGE_URL": f"redis://{backend}:6379/0",
                "SPOOL_DIR": str(self.path(f"{host.name}-spool")), **settings}

    def start_app_server(self, host: Host) -> None:
        host.spawn([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                    "--workers", str(APP_WORKERS),
                    "--threads", "8", "--bind", f"{host.address()}:{APP_PORT}",
                    # gunicorn's control socket has one default path for the whole machine
                    "--control-socket", str(self.path(f"{host.name}-gunicorn.ctl")),
                    "app:create_app()"],
                   "gunicorn", self.host_env(
                       host, MONITOR_ENABLED="0", LOG_LEVEL="WARNING",
                       PROMETHEUS_MULTIPROC_DIR=str(self.path(f"{host.name}-prometheus"))))

    def start_monitor(self, host: Host) -> None:
        host.spawn([sys.executable, "-m", "flask", "--app", "app", "monitor"], "monitor",
                   self.host_env(host))

    def monitor_running(self, host: Host) -> bool:
        log = self.logs / f"{host.name}-monitor.log"
        return log.exists() and "monitor running" in log.read_text(errors="replace")

    def query(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        """Rows of one query on the run's database, through the server's socket."""
        with closing(psycopg2.connect(host=str(self.postgres_socket_dir), user="postgres",
                                      dbname="hbmon")) as connection:
            with connection.cursor() as cursor:
                cursor.execute(sql, parameters)
                return cursor.fetchall()

    def spooled(self, host: Host) -> int:
        """Heartbeats waiting in the host's spool."""
        spool = Spool(self.path(f"{host.name}-spool"), "heartbeats")
        return sum(path.read_bytes().count(b"\n") for path in spool.pending_files())

    def agent(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tests.system.agents", *args]


def postgres_bin() -> Path:
    """Debian's PostgreSQL server programs, the newest version installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda path: int(path.parts[-3]))
    if not found:
        raise RuntimeError("no PostgreSQL server in /usr/lib/postgresql: "
                           "`make system-test` installs Debian's postgresql")
    return found[-1].parent


def run_as_postgres(argv: list[str]) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True)


def _answers(call) -> bool:
    try:
        call()
        return True
    except Exception:
        return False
