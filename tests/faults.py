"""Fault injection: a TCP proxy that can cut, stall or slow the database; a real server."""
from __future__ import annotations

import datetime as dt
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


class ChaosProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut()`, `stall()`, `slow()`, `restore()`.

    cut: drops every open connection and refuses new ones (accepted, then closed at once).
    stall: keeps connections open but forwards nothing, like a hung server or network.
    slow: delays every chunk by `delay_seconds`.
    """

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.mode = "pass"
        self.delay_seconds = 0.0
        self.lock = threading.Lock()
        self.connections: list[socket.socket] = []
        self.running = True
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "cut":
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        pair = {client: upstream, upstream: client}
        try:
            while self.running:
                readable = select.select(list(pair), [], [], 0.1)[0]
                if self.mode == "cut":
                    return
                if self.mode == "stall":
                    continue
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    if self.mode == "slow":
                        time.sleep(self.delay_seconds)
                    pair[source].sendall(data)
        except (OSError, ValueError):  # ValueError: select() on a socket a cut just closed
            return
        finally:
            for sock in (client, upstream):
                try:
                    sock.close()
                except OSError:
                    pass

    def _close_all(self) -> None:
        with self.lock:
            connections, self.connections = self.connections, []
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass

    def drop_connections(self) -> None:
        """Kill every open connection once; new ones go through (a restart, a failover)."""
        self._close_all()

    def cut(self) -> None:
        self.mode = "cut"
        self._close_all()

    def stall(self) -> None:
        self.mode = "stall"

    def slow(self, delay_seconds: float) -> None:
        self.delay_seconds = delay_seconds
        self.mode = "slow"

    def restore(self) -> None:
        if self.mode == "stall":
            self._close_all()  # a stalled connection's state is unknown; start afresh
        self.mode = "pass"

    def close(self) -> None:
        self.running = False
        self.listener.close()
        self._close_all()


class ClockFile:
    """A clock another process reads (CLOCK_FILE): the test moves it, atomically."""

    def __init__(self, path: Path, start: dt.datetime):
        self.path = path
        self.now = start
        self._write()

    def _write(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(self.now.isoformat())
        os.replace(temporary, self.path)

    def advance(self, seconds: float) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        self._write()
        return self.now

    def set(self, moment: dt.datetime) -> None:
        self.now = moment
        self._write()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def log_tail(log, size: int = 3000) -> str:
    """The end of a subprocess's log file."""
    log.seek(0)
    return log.read().decode(errors="replace")[-size:]


class ServerProcess:
    """The app served by gunicorn in a subprocess, as in production."""

    def __init__(self, env: dict[str, str], workers: int = 1, threads: int = 8):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "LOG_FORMAT": "text", "LOG_LEVEL": "WARNING", **env}
        self.command = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
                        "--workers", str(workers), "--threads", str(threads),
                        "--bind", f"127.0.0.1:{self.port}", "--graceful-timeout", "20",
                        "app:create_app()"]
        self.process: subprocess.Popen | None = None
        # A file, not a pipe: a pipe nobody reads would block a process that logs a lot.
        self.log = tempfile.TemporaryFile()

    def start(self, timeout_seconds: float = 30) -> "ServerProcess":
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(self.stderr_tail())
            try:
                requests.get(self.url + "/ping/not-a-uuid", timeout=5)
                return self
            # The master listens before its workers have imported the app: a first request may
            # wait longer than the probe's timeout.
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self, sig: int = signal.SIGTERM, timeout_seconds: float = 30) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        return self.process.wait(timeout_seconds)

    def stderr_tail(self) -> str:
        return log_tail(self.log)


class MonitorProcess:
    """`flask monitor` in a subprocess."""

    def __init__(self, env: dict[str, str]):
        self.env = {**os.environ, "LOG_FORMAT": "text", "LOG_LEVEL": "WARNING", **env}
        self.process: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()

    def start(self) -> "MonitorProcess":
        self.process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "monitor"],
                                        cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
                                        stderr=self.log)
        return self

    def stderr_tail(self) -> str:
        return log_tail(self.log)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


class SlowClients:
    """`count` connections that each send a request's headers, declaring a body of
    `declared_bytes`, and `sent_bytes` of that body, then hold still (a slow or stalled
    client). `cut()` closes them all, mid-body."""

    def __init__(self, port: int, path: str, count: int, declared_bytes: int = 1000,
                 sent_bytes: int = 3):
        self.sockets: list[socket.socket] = []
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {declared_bytes}\r\n\r\n").encode()
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(head + b"x" * sent_bytes)
            self.sockets.append(sock)

    def cut(self) -> None:
        for sock in self.sockets:
            try:
                sock.close()
            except OSError:
                pass
        self.sockets = []


def raw_request(port: int, request: bytes, timeout_seconds: float = 10) -> bytes:
    """Send raw bytes on a new connection; everything the server answers before closing (or
    before the timeout), as bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_seconds) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if _whole_response(b"".join(chunks)):
                    break
        except socket.timeout:
            pass
    return b"".join(chunks)


def _whole_response(data: bytes) -> bool:
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def timed_ping(port: int, uuid: str, timeout_seconds: float = 10) -> tuple[int | None, float]:
    """(status or None on failure, seconds) of one bodyless ping on a new connection, as curl
    from cron sends it."""
    started = time.monotonic()
    try:
        answer = raw_request(port, f"GET /ping/{uuid} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   "Connection: close\r\n\r\n".encode(), timeout_seconds)
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else None
    except OSError:
        status = None
    return status, time.monotonic() - started
