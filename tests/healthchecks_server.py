"""A stand-in for a Healthchecks instance: its v3 API as its documentation gives it.

GET /api/v3/checks/ and /api/v3/channels/ (the key in X-Api-Key), answered with the checks and
channels a test sets; a read-only key gets checks in the read-only shape and 401 on channels,
as Healthchecks does. `not_healthchecks` makes it answer like some other web server.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_KEY = "X" * 32
READ_ONLY_KEY = "R" * 32
READ_ONLY_HIDDEN = ("uuid", "ping_url", "update_url", "pause_url", "resume_url", "channels")


def documented_check(uuid: str, name: str, **fields) -> dict:
    """A check as the documentation's list example shows it."""
    check = {
        "name": name, "slug": "", "tags": "", "desc": "", "grace": 3600, "n_pings": 0,
        "status": "new", "started": False, "last_ping": None, "next_ping": None,
        "manual_resume": False, "methods": "", "start_kw": "", "success_kw": "",
        "failure_kw": "", "filter_subject": False, "filter_body": False,
        "filter_http_body": False, "filter_default_fail": False,
        "badge_url": "https://hc.example.com/b/2/1b9d0386-d07e-44b0-8995-4a9a372de43c.svg",
        "uuid": uuid, "ping_url": f"https://hc-ping.com/{uuid}",
        "update_url": f"https://hc.example.com/api/v3/checks/{uuid}",
        "pause_url": f"https://hc.example.com/api/v3/checks/{uuid}/pause",
        "resume_url": f"https://hc.example.com/api/v3/checks/{uuid}/resume",
        "channels": "", "timeout": 86400}
    check.update(fields)
    if "schedule" in fields:
        del check["timeout"]
    return check


def documented_example() -> tuple[list[dict], list[dict]]:
    """The checks of the "List Existing Checks" example and the channels of "List Existing
    Integrations"."""
    channels = [{"id": "4ec5a071-2d08-4baa-898a-eb4eb3cd6941", "name": "My Work Email",
                 "kind": "email"},
                {"id": "746a083e-f542-4554-be1a-707ce16d3acc", "name": "My Phone",
                 "kind": "sms"}]
    both = ",".join(channel["id"] for channel in channels)
    checks = [
        documented_check("31365bce-8da9-4729-8ff3-aaa71d56b712", "Filesystem Backup",
                         slug="filesystem-backup", tags="backup fs",
                         desc="Runs incremental backup every hour", grace=600, n_pings=1,
                         status="up", last_ping="2020-03-24T14:02:03+00:00",
                         next_ping="2020-03-24T15:02:03+00:00", start_kw="START",
                         success_kw="SUCCESS", failure_kw="ERROR", filter_subject=True,
                         channels=both, timeout=3600),
        documented_check("803f680d-e89b-492b-82ef-2be7b774a92d", "Database Backup",
                         slug="database-backup", tags="production db",
                         desc="Runs ~/db-backup.sh", grace=1200, n_pings=7, status="down",
                         last_ping="2020-03-23T10:19:32+00:00", channels=both,
                         schedule="15 5 * * *", tz="UTC"),
    ]
    return checks, channels


class HealthchecksServer:
    def __init__(self) -> None:
        self.checks, self.channels = documented_example()
        self.not_healthchecks = False
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake.requests.append(self.path)
                if fake.not_healthchecks:
                    return self.reply(200, b"<html><body>Welcome to nginx!</body></html>",
                                      "text/html")
                key = self.headers.get("X-Api-Key", "")
                if key not in (API_KEY, READ_ONLY_KEY):
                    return self.reply_json(401, {"error": "wrong api key"})
                if self.path == "/api/v3/checks/":
                    checks = fake.checks if key == API_KEY else [fake.read_only(check)
                                                                 for check in fake.checks]
                    return self.reply_json(200, {"checks": checks})
                if self.path == "/api/v3/channels/":
                    if key != API_KEY:
                        return self.reply_json(401, {"error": "wrong api key"})
                    return self.reply_json(200, {"channels": fake.channels})
                return self.reply(404, b"Not Found", "text/html")

            def reply_json(self, status: int, document) -> None:
                self.reply(status, json.dumps(document).encode(), "application/json")

            def reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def read_only(check: dict) -> dict:
        shown = {name: value for name, value in check.items() if name not in READ_ONLY_HIDDEN}
        shown["unique_key"] = "a6c7b0a8a66bed0df66abfdab3c77736861703ee"
        return shown

    def start(self) -> "HealthchecksServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
