"""Real destinations for alerts: an HTTP sink whose behaviour tests script, an SMTP server."""
from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import zlib
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


class HttpSink:
    """Records every request; answers each with the next scripted behaviour, then `default`.

    A behaviour is a status code, or a dict {"status": int, "headers": {...}, "hang": seconds,
    "body": JSON to answer with}.
    `answered` counts the answers given by status, and "hang" for each request that hung.
    """

    def __init__(self, default=200):
        self.default = default
        self.script: deque = deque()
        self.received: list[dict] = []
        self.answered: Counter = Counter()
        self.lock = threading.Lock()
        self.release = threading.Event()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request: nothing was delivered
                    return
                with sink.lock:
                    behaviour = sink.script.popleft() if sink.script else sink.default
                    behaviour = behaviour if isinstance(behaviour, dict) else {"status": behaviour}
                    sink.answered[behaviour["status"]] += 1
                    if behaviour.get("hang"):
                        sink.answered["hang"] += 1
                if behaviour.get("hang"):
                    sink.release.wait(behaviour["hang"])
                status = behaviour["status"]
                if 200 <= status < 300:
                    with sink.lock:
                        sink.received.append({"headers": dict(self.headers), "body": body,
                                              "json": _json_or_none(body), "path": self.path,
                                              "at": time.monotonic()})
                reply = json.dumps(behaviour.get("body", {"ok": True})).encode()
                try:
                    self.send_response(status)
                    for name, value in behaviour.get("headers", {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting (a hang past its timeout)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> "HttpSink":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def then(self, *behaviours) -> "HttpSink":
        with self.lock:
            self.script.extend(behaviours)
        return self

    def alert_ids(self) -> list[str]:
        with self.lock:
            return [request["json"]["alert_id"] for request in self.received]


def _json_or_none(body: bytes):
    try:
        return json.loads(body or b"null")
    except ValueError:  # a form, say
        return None


class SmtpSink:
    """A real SMTP server (aiosmtpd) on a free loopback port, keeping what it receives.

    With `starttls` (an ssl.SSLContext) it offers STARTTLS and refuses mail before it; with
    `implicit_tls` it speaks TLS from the first byte (smtps). `secure` says, per message,
    whether its session was encrypted.
    """

    def __init__(self, starttls=None, implicit_tls=None):
        self.messages: list = []
        self.secure: list[bool] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                sink.messages.append(envelope)
                sink.secure.append(server.transport.get_extra_info("ssl_object") is not None)
                return "250 OK"

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        options = {"tls_context": starttls, "require_starttls": True} if starttls else {}
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     ssl_context=implicit_tls, **options)
        scheme = "smtps" if implicit_tls else "smtp"
        query = "?starttls=1" if starttls else ""
        self.url = f"{scheme}://127.0.0.1:{self.port}{query}"

    def start(self) -> "SmtpSink":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


class SentrySink:
    """A local HTTP server standing in for Sentry's ingestion endpoint."""

    def __init__(self):
        self.envelopes: list[tuple[str, bytes]] = []
        self.arrived = threading.Event()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                sink.envelopes.append((self.path, body))
                sink.arrived.set()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        found = []
        for _, body in self.envelopes:
            lines = body.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2]):
                if json.loads(header).get("type") == "event":
                    found.append(json.loads(payload))
        return found
