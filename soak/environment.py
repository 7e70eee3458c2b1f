"""What the soak runs against: its own PostgreSQL database, a small spool disk, the processes."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg2
from sqlalchemy.engine import make_url

from tests.faults import ROOT

BALLAST_NAME = "ballast"


def dsn(url: str) -> str:
    """A libpq connection string for a SQLAlchemy-style URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def through_proxy(url: str, port: int) -> str:
    """The same database, reached through the fault-injecting proxy on `port`."""
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


class SoakDatabase:
    """A database created on the server at `admin_url` for one run, and dropped after it."""

    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        self.name = f"hbmon_soak_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.url = make_url(admin_url).set(database=self.name).render_as_string(
            hide_password=False)

    def _admin(self, statement: str) -> None:
        connection = psycopg2.connect(dsn(self.admin_url), connect_timeout=5)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()

    def create(self) -> "SoakDatabase":
        self._admin(f'CREATE DATABASE "{self.name}"')
        return self

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def connect(self):
        """A direct connection (not through the proxy), in autocommit, for the checker."""
        connection = psycopg2.connect(dsn(self.url), connect_timeout=5)
        connection.autocommit = True
        return connection


def flask_command(env: dict[str, str], *args: str) -> str:
    """Run `flask <args>` as an operator would; returns its standard output."""
    completed = subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT,
                               env={**os.environ, **env}, capture_output=True, text=True,
                               timeout=120)
    if completed.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)} failed:\n{completed.stderr[-2000:]}")
    return completed.stdout


class SpoolDisk:
    """A small tmpfs for SPOOL_DIR, which a ballast file can fill up (needs root)."""

    def __init__(self, mount_point: Path, size_bytes: int):
        self.mount_point = mount_point
        self.size_bytes = size_bytes
        self.mounted = False
        self.failure = ""

    @property
    def spool_dir(self) -> Path:
        return self.mount_point / "spool"

    def mount(self) -> "SpoolDisk":
        self.mount_point.mkdir(parents=True, exist_ok=True)
        completed = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_bytes},mode=0700", "tmpfs",
             str(self.mount_point)], capture_output=True, text=True)
        self.mounted = completed.returncode == 0
        self.failure = completed.stderr.strip()
        self.spool_dir.mkdir(exist_ok=True)
        return self

    def fill(self) -> int:
        """Write a ballast file until the disk is full; returns its size in bytes."""
        chunk = b"\0" * 65536
        written = 0
        fd = os.open(self.mount_point / BALLAST_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                     0o600)
        try:
            while len(chunk) >= 1:
                try:
                    written += os.write(fd, chunk)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    chunk = chunk[:len(chunk) // 2]  # fill the last pages too
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        (self.mount_point / BALLAST_NAME).unlink(missing_ok=True)

    def spool_files(self) -> dict[str, int]:
        """Every file left in the spool directory, with its size."""
        return {path.name: path.stat().st_size for path in sorted(self.spool_dir.iterdir())
                if path.is_file() and path.stat().st_size > 0}

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "--lazy", str(self.mount_point)], check=False)
            self.mounted = False


def gunicorn_workers(master_pid: int) -> list[int]:
    """The worker processes of a gunicorn master (its children)."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    try:
        return [int(pid) for pid in children.read_text().split()]
    except FileNotFoundError:
        return []
