"""An alert sink for the drain benchmark: counts deliveries by Idempotency-Key.

`python bench/sink.py PORT`. POST anything: 200 (counted) while up, 503 while down.
`POST /_down`, `POST /_up` switch; `GET /_stats` answers the counts as JSON.
"""
from __future__ import annotations

import collections
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

received: collections.Counter[str] = collections.Counter()
refused = 0
state = {"up": False}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass

    def _answer(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        with lock:
            body = json.dumps({"delivered": sum(received.values()), "distinct": len(received),
                               "duplicates": sum(n - 1 for n in received.values() if n > 1),
                               "refused": refused}).encode()
        self._answer(200, body)

    def do_POST(self) -> None:
        global refused
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path in ("/_up", "/_down"):
            state["up"] = self.path == "/_up"
            return self._answer(204)
        key = self.headers.get("Idempotency-Key", "")
        with lock:
            if not state["up"]:
                refused += 1
            else:
                received[key] += 1
        self._answer(200 if state["up"] else 503)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()
