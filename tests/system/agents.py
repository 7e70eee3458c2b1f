"""Programs the system test runs on its hosts: the client, the flood and the alert sink.

    python -m tests.system.agents client HOSTS PLAN LOG
        Once a round, pings every application the PLAN file lists (the test rewrites it as the
        scenario goes), each through the app hosts in turn from one round to the next; on a
        connection error, a timeout or a 5xx it tries the next host at once (fail-over).
    python -m tests.system.agents flood HOSTS UUID COUNT LOG
        COUNT pings of one application from 16 threads, over the hosts in turn.
    python -m tests.system.agents sink PORT LOG HOLD_SECONDS
        An alert destination: records each delivery as it arrives, answers 200 after
        HOLD_SECONDS (so a delivery is in flight long enough to kill its sender meanwhile).

HOSTS is a comma-separated list of base URLs. Every request is one line of LOG and carries its
own User-Agent, `<agent>/<sequence>`, which the service stores with the heartbeat: the checker
finds each answered ping's row by it.
"""
from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

REQUEST_TIMEOUT_SECONDS = 5.0


class LineLog:
    """Appends one JSON object per line, flushed at once, from any thread."""

    def __init__(self, path: str):
        self.file = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def write(self, record: dict) -> None:
        with self.lock:
            self.file.write(json.dumps(record) + "\n")


class Pinger:
    """Sends pings, each a new connection as `curl` from cron does, and logs every attempt."""

    def __init__(self, agent: str, log: LineLog):
        self.agent = agent
        self.log = log
        self.sequence = itertools.count(1)

    def send(self, host: str, uuid: str, signal: str, round_number: int) -> int | None:
        """The answer's status, or None when there was none."""
        user_agent = f"{self.agent}/{next(self.sequence)}"
        url = f"{host}/ping/{uuid}" + (f"/{signal}" if signal else "")
        record = {"user_agent": user_agent, "uuid": uuid, "signal": signal or "ok", "host": host,
                  "round": round_number, "sent_at": time.time(), "status": None, "error": None}
        try:
            record["status"] = requests.get(url, headers={"User-Agent": user_agent},
                                            timeout=REQUEST_TIMEOUT_SECONDS).status_code
        except requests.RequestException as error:
            record["error"] = type(error).__name__
        record["seconds"] = round(time.time() - record["sent_at"], 4)
        self.log.write(record)
        return record["status"]

    def send_with_failover(self, hosts: list[str], first: int, uuid: str, signal: str,
                           round_number: int) -> None:
        for attempt in range(len(hosts)):
            status = self.send(hosts[(first + attempt) % len(hosts)], uuid, signal, round_number)
            if status is not None and status < 500:
                return


def wait_for_hosts(hosts: list[str], timeout_seconds: float = 90.0) -> None:
    """Return once every host answers `/health` (gunicorn starts serving after the client)."""
    deadline = time.monotonic() + timeout_seconds
    for host in hosts:
        while True:
            try:
                if requests.get(f"{host}/health", timeout=REQUEST_TIMEOUT_SECONDS).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{host} did not answer within {timeout_seconds:g} s")
            time.sleep(0.1)


def run_client(hosts: list[str], plan_path: str, log_path: str) -> None:
    """Ping the plan's applications every `round_seconds` until the plan says stop.

    The plan: {"round_seconds": 1.0, "pings": {uuid: "" | "fail"}, "stop": false}.
    """
    pinger = Pinger("client", LineLog(log_path))
    wait_for_hosts(hosts)
    # Rounds start on schedule, whatever the previous round's answers are still doing: as cron
    # starts a job whether or not its last ping got an answer.
    with ThreadPoolExecutor(128) as pool:
        next_round = time.monotonic()
        for round_number in itertools.count():
            plan = json.loads(Path(plan_path).read_text())
            if plan["stop"]:
                return  # once every ping sent is answered or has failed
            for index, (uuid, signal) in enumerate(plan["pings"].items()):
                pool.submit(pinger.send_with_failover, hosts, (index + round_number) % len(hosts),
                            uuid, signal, round_number)
            next_round += plan["round_seconds"]
            time.sleep(max(0.0, next_round - time.monotonic()))


def run_flood(hosts: list[str], uuid: str, count: int, log_path: str) -> None:
    pinger = Pinger("flood", LineLog(log_path))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: pinger.send(hosts[n % len(hosts)], uuid, "", 0), range(count)))


def run_sink(port: int, log_path: str, hold_seconds: float) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            log.write({"idempotency_key": self.headers.get("Idempotency-Key"),
                       "alert": json.loads(body), "sender": self.client_address[0],
                       "received_at": time.time()})
            time.sleep(hold_seconds)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    log = LineLog(log_path)  # created once listening: the test waits for it
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    client = commands.add_parser("client")
    client.add_argument("hosts")
    client.add_argument("plan")
    client.add_argument("log")
    flood = commands.add_parser("flood")
    flood.add_argument("hosts")
    flood.add_argument("uuid")
    flood.add_argument("count", type=int)
    flood.add_argument("log")
    sink = commands.add_parser("sink")
    sink.add_argument("port", type=int)
    sink.add_argument("log")
    sink.add_argument("hold_seconds", type=float)
    args = parser.parse_args()
    if args.command == "client":
        run_client(args.hosts.split(","), args.plan, args.log)
    elif args.command == "flood":
        run_flood(args.hosts.split(","), args.uuid, args.count, args.log)
    else:
        run_sink(args.port, args.log, args.hold_seconds)


if __name__ == "__main__":
    main()
