"""The load: applications sending pings, failures and JSON heartbeats as real jobs do.

Each application runs in its own thread with one behaviour. `steady` ones keep their schedule
from start to end (they must never be alerted); `silent`, `failing` and `hung` ones
deliberately go quiet, report failures, or start a run that never ends, then come back (each
such episode must be alerted once per channel, and recover). When the run ends, `recover()`
makes every application keep its schedule, so every incident can resolve.

Every request carries a unique User-Agent, which the service stores with the heartbeat: the
checker finds each request's heartbeat by it. An answer that refuses a heartbeat (503 with
Retry-After, or a lost connection) is retried as curl --retry would, as a new request.
"""
from __future__ import annotations

import dataclasses
import itertools
import random
import threading
import time
import uuid as uuid_lib
from typing import Any

import requests

AGENT = "hbmon-soak"
CLIENT_TIMEOUT_SECONDS = 15.0
GIVE_UP_AFTER_SECONDS = 60.0


@dataclasses.dataclass
class Sent:
    """One request and what became of it."""

    token: str  # the User-Agent: identifies the heartbeat this request may have stored
    application: str  # uuid
    behaviour: str
    form: str  # e.g. "GET /ping/<uuid>/fail", "JSON fail", "cut-off body"
    kind: str | None  # the heartbeat kind it must be stored as; None for management reads
    at: float  # seconds since the soak started, when it was sent
    seconds: float = 0.0  # until the answer
    status: int | None = None  # None: no answer (connection lost, timed out, or cut off)
    retry_after: str | None = None
    code: str | None = None  # the error envelope's code, or NOT_AN_ENVELOPE
    heartbeat_uuid: str | None = None  # what a 202 answered
    cut_off: bool = False  # the client hung up mid-body on purpose
    error: str | None = None
    during: str | None = None  # the fault in effect when it was sent
    database_lost: bool = False  # the database went away while it was in flight

    @property
    def answered_2xx(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def answer(self) -> str:
        """What the client saw, e.g. "200", "503 SERVICE_UNAVAILABLE", "no answer (Timeout)"."""
        if self.cut_off:
            return "cut off by the client"
        if self.status is None:
            return f"no answer ({self.error})"
        return f"{self.status} {self.code}" if self.code else str(self.status)


NOT_AN_ENVELOPE = "NOT_AN_ENVELOPE"


@dataclasses.dataclass
class SoakApplication:
    name: str
    behaviour: str  # steady, silent, failing, hung
    schedule: dict[str, Any]
    channel_names: list[str]
    uuid: str = ""


SCHEDULES = {
    "steady": {"period_seconds": 20, "grace_seconds": 10},
    "steady-cron": {"cron": "* * * * *", "timezone": "Europe/Berlin", "grace_seconds": 30},
    "silent": {"period_seconds": 6, "grace_seconds": 6},
    "failing": {"period_seconds": 20, "grace_seconds": 10},
    "hung": {"period_seconds": 20, "grace_seconds": 5},
}


def plan_applications(count: int, channel_names: list[str], rng: random.Random) \
        -> list[SoakApplication]:
    """`count` applications: 70 % steady (a seventh of them on cron), 12 % silent, 12 %
    failing, 6 % hung. Every one is on the first two channels, a third also on the last."""
    shares = [("silent", 0.12), ("failing", 0.12), ("hung", 0.06)]
    behaviours: list[str] = []
    for behaviour, share in shares:
        behaviours += [behaviour] * max(1, round(count * share))
    behaviours += ["steady"] * (count - len(behaviours))
    planned = []
    for number, behaviour in enumerate(behaviours):
        schedule = "steady-cron" if behaviour == "steady" and number % 7 == 0 else behaviour
        channels = channel_names[:2] + (channel_names[2:] if number % 3 == 0 else [])
        planned.append(SoakApplication(f"{behaviour}-{number:03d}", behaviour,
                                       SCHEDULES[schedule], channels))
    rng.shuffle(planned)
    return planned


class LoadGenerator:
    """Drives every application in its own thread, plus an operator reading the API."""

    def __init__(self, base_url: str, applications: list[SoakApplication], api_key: str,
                 seed: int, started_at: float):
        self.base_url = base_url
        self.applications = applications
        self.api_key = api_key
        self.seed = seed
        self.started_at = started_at
        self.sent: list[Sent] = []
        self.stopping = threading.Event()
        self.recovering = threading.Event()
        self._tokens = itertools.count(1)
        self._threads: list[threading.Thread] = []

    def new_token(self) -> str:
        return f"{AGENT}/{next(self._tokens)}"

    def now(self) -> float:
        return time.monotonic() - self.started_at

    def record(self, sent: Sent) -> Sent:
        self.sent.append(sent)  # list.append is atomic
        return sent

    def start(self) -> "LoadGenerator":
        for number, application in enumerate(self.applications):
            client = ApplicationClient(self, application, random.Random(self.seed * 1000 + number))
            self._threads.append(threading.Thread(target=client.run, daemon=True,
                                                  name=f"soak-{application.name}"))
        self._threads.append(threading.Thread(target=self._operator, daemon=True,
                                              name="soak-operator"))
        for thread in self._threads:
            thread.start()
        return self

    def recover(self) -> None:
        """From now on every application keeps its schedule."""
        self.recovering.set()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(CLIENT_TIMEOUT_SECONDS + 5)

    def _operator(self) -> None:
        """Management reads every half second: 200, or 503 DATABASE_UNAVAILABLE in outages."""
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.api_key}"
        rng = random.Random(self.seed - 1)
        while not self.stopping.wait(0.5):
            application = rng.choice(self.applications)
            self.send(session, application, "GET /api/v1/applications/<uuid>", None, "GET",
                      f"/api/v1/applications/{application.uuid}")

    def send(self, session: requests.Session, application: SoakApplication, form: str,
             kind: str | None, method: str, path: str, **body: Any) -> Sent:
        """One request; what it answered is recorded."""
        token = self.new_token()
        sent = Sent(token, application.uuid, application.behaviour, form, kind, self.now())
        started = time.monotonic()
        try:
            response = session.request(method, self.base_url + path, timeout=CLIENT_TIMEOUT_SECONDS,
                                       headers={"User-Agent": token, "Connection": "close"},
                                       **body)
        except requests.RequestException as error:
            sent.error = type(error).__name__
        else:
            sent.status = response.status_code
            sent.retry_after = response.headers.get("Retry-After")
            _read_response(sent, response, method)
        sent.seconds = time.monotonic() - started
        return self.record(sent)


def _read_response(sent: Sent, response: requests.Response, method: str) -> None:
    if response.status_code == 202:
        try:
            sent.heartbeat_uuid = response.json()["uuid"]
        except (ValueError, KeyError, TypeError):
            sent.heartbeat_uuid = None
    if response.status_code >= 400 and method != "HEAD":  # an answer to HEAD has no body
        try:
            sent.code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            sent.code = NOT_AN_ENVELOPE


def _retry_wait(sent: Sent) -> float:
    """Seconds before a refused or lost heartbeat is sent again (Retry-After, at most 5)."""
    if sent.status is None:
        return 0.5
    if sent.retry_after and sent.retry_after.isdigit():
        return min(5.0, float(sent.retry_after))
    return 1.0


class ApplicationClient:
    """One application's job: its behaviour, repeated until the run stops."""

    def __init__(self, load: LoadGenerator, application: SoakApplication, rng: random.Random):
        self.load = load
        self.application = application
        self.rng = rng
        self.session = requests.Session()
        self.path = f"/ping/{application.uuid}"
        self.api_path = f"/api/v1/applications/{application.uuid}/heartbeats"

    def run(self) -> None:
        behaviour = getattr(self, f"{self.application.behaviour}_cycle")
        if not self.pause(self.rng.uniform(0, 3)):  # spread the first pings
            return
        while not self.load.stopping.is_set():
            if self.load.recovering.is_set():
                self.keep_schedule(2.0)
            else:
                behaviour()

    def pause(self, seconds: float, until_recovery: bool = False) -> bool:
        """Wait; False as soon as the run stops (or recovery begins, when asked)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.load.stopping.wait(min(left, 0.2)):
                return False
            if until_recovery and self.load.recovering.is_set():
                return False
        return True

    def beat(self, form: str, kind: str, method: str, path: str, **body: Any) -> bool:
        """Send until a 2xx answer, retrying refusals and lost connections; True if answered."""
        give_up_at = time.monotonic() + GIVE_UP_AFTER_SECONDS
        while True:
            sent = self.load.send(self.session, self.application, form, kind, method, path,
                                  **body)
            if sent.answered_2xx:
                return True
            if sent.status is not None and 400 <= sent.status < 500 and sent.status != 429:
                return False  # the request itself is wrong: a retry would not help
            wait = _retry_wait(sent)
            if time.monotonic() + wait > give_up_at or not self.pause(wait):
                return False

    # --- what a job sends ------------------------------------------------------------------

    def success(self) -> None:
        """One success, in one of the forms a job may use."""
        path, api, rid = self.path, self.api_path, str(uuid_lib.uuid4())
        choice = self.rng.randrange(8)
        if choice == 0:
            self.beat("GET /ping/<uuid>", "ok", "GET", path)
        elif choice == 1:
            self.beat("HEAD /ping/<uuid>", "ok", "HEAD", path)
        elif choice == 2:
            self.beat("POST /ping/<uuid> with a body", "ok", "POST", path,
                      data=f"run finished, {self.rng.randrange(10**6)} rows".encode())
        elif choice == 3:
            self.beat("GET /ping/<uuid>/0", "ok", "GET", path + "/0")
        elif choice == 4:
            if self.beat("POST /ping/<uuid>/start?rid=", "start", "POST",
                         f"{path}/start?rid={rid}") and self.pause(self.rng.uniform(0.2, 1.0)):
                self.beat("GET /ping/<uuid>?rid=", "ok", "GET", f"{path}?rid={rid}")
        elif choice == 5:
            self.beat("JSON ok", "ok", "POST", api,
                      json={"status": "ok", "duration_ms": self.rng.randrange(10**5),
                            "metadata": {"host": "soak"}})
        elif choice == 6:
            if self.beat("JSON start", "start", "POST", api, json={"status": "start"}) \
                    and self.pause(self.rng.uniform(0.2, 1.0)):
                self.beat("JSON ok", "ok", "POST", api, json={"status": "ok"})
        else:
            self.beat("JSON empty object", "ok", "POST", api, json={})
        if self.rng.random() < 0.1:
            if self.rng.random() < 0.5:
                self.beat("POST /ping/<uuid>/log", "log", "POST", path + "/log",
                          data=b"progress: 50%")
            else:
                self.beat("JSON log", "log", "POST", api,
                          json={"status": "log", "message": "progress: 50%"})

    def failure(self) -> None:
        """One failure report, in one of the forms a job may use."""
        exit_code = self.rng.randrange(1, 256)
        choice = self.rng.randrange(4)
        if choice == 0:
            self.beat("GET /ping/<uuid>/fail", "fail", "GET", self.path + "/fail")
        elif choice == 1:
            self.beat("POST /ping/<uuid>/fail with a body", "fail", "POST", self.path + "/fail",
                      data=b"Traceback: disk quota exceeded")
        elif choice == 2:
            self.beat("GET /ping/<uuid>/<exit code>", "fail", "GET", f"{self.path}/{exit_code}")
        else:
            self.beat("JSON fail", "fail", "POST", self.api_path,
                      json={"status": "fail", "exit_code": exit_code, "message": "failed"})

    def start_run(self) -> None:
        if self.rng.random() < 0.5:
            self.beat("POST /ping/<uuid>/start", "start", "POST", self.path + "/start")
        else:
            self.beat("JSON start", "start", "POST", self.api_path, json={"status": "start"})

    def keep_schedule(self, every_seconds: float) -> None:
        self.success()
        self.pause(every_seconds * self.rng.uniform(0.8, 1.2))

    # --- behaviours: one cycle each ---------------------------------------------------------

    def steady_cycle(self) -> None:
        self.keep_schedule(3.5)

    def silent_cycle(self) -> None:
        """Pings for 12 s, then silence for 40 s: past period 6 s + grace 6 s even when the
        faults' outage gaps push the deadline back."""
        for _ in range(6):
            self.keep_schedule(2.0)
        self.pause(40, until_recovery=True)

    def failing_cycle(self) -> None:
        """Successes for 10 s, then one to three failures, still failing for a while."""
        for _ in range(5):
            self.keep_schedule(2.0)
        for _ in range(self.rng.randint(1, 3)):
            if self.load.recovering.is_set():
                return
            self.failure()
            self.pause(1.5, until_recovery=True)
        self.pause(4, until_recovery=True)

    def hung_cycle(self) -> None:
        """Successes for 12 s, then a run that starts and hangs for 25 s (grace 5 s)."""
        for _ in range(4):
            self.keep_schedule(3.0)
        if not self.load.recovering.is_set():
            self.start_run()
            self.pause(25, until_recovery=True)
