"""What the alert benchmarks (bench_drain.py, bench_alerts_on_time.py) share: the sink
(bench/sink.py, its own process, down until told to recover), alerts queued for it in bulk
over CHANNELS webhook channels, and the service's Deliverer run as in production (its loop in
a thread) until the sink has them."""
from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import sys
import threading
import time
import uuid
from typing import Callable, Iterator

import requests
from sqlalchemy import insert

from common import ROOT, wait_for_port

CHANNELS = 10


@contextlib.contextmanager
def alert_sink(port: int) -> Iterator[None]:
    sink = subprocess.Popen([sys.executable, str(ROOT / "bench" / "sink.py"), str(port)])
    try:
        wait_for_port(port)
        yield
    finally:
        sink.terminate()
        sink.wait(10)


def sink_stats(port: int) -> dict[str, int]:
    return requests.get(f"http://127.0.0.1:{port}/_stats", timeout=5).json()


def recover(port: int) -> None:
    """The sink answers 200 from now on."""
    requests.post(f"http://127.0.0.1:{port}/_up", timeout=5)


def queue_alerts(app, port: int, count: int, payload: Callable[[str, dt.datetime], dict],
                 due_at: dt.datetime, secret: str | None = None) -> None:
    """`count` pending application.down alerts, due at `due_at`, spread over CHANNELS webhook
    channels to the sink."""
    from database import db
    from models import Alert, Channel

    now = dt.datetime.now(dt.timezone.utc)
    with app.app_context():
        channels = [Channel(name=f"sink-{i}", kind="webhook", secret=secret,
                            url=f"http://127.0.0.1:{port}/hook/{i}", created_at=now,
                            updated_at=now) for i in range(CHANNELS)]
        db.session.add_all(channels)
        db.session.flush()
        rows = []
        for i in range(count):
            alert_uuid = str(uuid.uuid4())
            rows.append({"uuid": alert_uuid, "channel_id": channels[i % CHANNELS].id,
                         "event": "application.down", "payload": payload(alert_uuid, now),
                         "state": "pending", "attempt_count": 0, "next_attempt_at": due_at,
                         "created_at": now, "expires_at": now + dt.timedelta(days=1)})
        db.session.execute(insert(Alert), rows)
        db.session.commit()


def wait_for_distinct(port: int, count: int, timeout_seconds: float) -> None:
    """Until the sink has received `count` distinct alerts, or the time is up."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline and sink_stats(port)["distinct"] < count:
        time.sleep(0.05)


@contextlib.contextmanager
def delivering(app) -> Iterator[None]:
    """The app's Deliverer loop running in a thread; stopped (its in-flight outcomes recorded
    first) on leaving."""
    deliverer = app.extensions["hbmon"].deliverer
    stop = threading.Event()
    loop = threading.Thread(target=deliverer.run, args=(stop,), daemon=True)
    loop.start()
    try:
        yield
    finally:
        time.sleep(1.0)  # let in-flight outcomes be recorded before counting
        stop.set()
        deliverer.wake()
        loop.join(30)
        deliverer.shutdown(wait=True)
