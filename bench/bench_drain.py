"""Target 3: 10,000 queued alerts delivered to a local HTTP sink after it recovers.

The sink (bench/sink.py, its own process) answers 503 at first, so the channels' breakers
open; then it recovers and the clock starts. The service's Deliverer (delivery.py) runs as
in production, its loop in a thread, until the sink has every alert. Baseline: the same sink
fed the same number of posts by as many plain posters as the Deliverer may have in flight
(ALERT_CONCURRENCY_PER_KIND), in the same run: with urllib3, which the Deliverer's senders use
(the ratio's baseline), and with `requests`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
import urllib3
from sqlalchemy import func, select

from alert_sink import (CHANNELS, alert_sink, delivering, queue_alerts, recover, sink_stats,
                        wait_for_distinct)
from common import bench_database, free_port, machine, report, scratch_dir

ALERTS = 10_000
PER_KIND = 8
PER_CHANNEL = 2
OUTAGE_SECONDS = 3.0


def payload(alert_uuid: str, now: dt.datetime) -> dict:
    return {"event": "application.down", "alert_id": alert_uuid, "occurred_at": now.isoformat(),
            "application": {"uuid": str(uuid.uuid4()), "name": "nightly-backup",
                            "status": "down", "last_heartbeat_at": now.isoformat()},
            "incident": {"id": 1, "started_at": now.isoformat(), "resolved_at": None,
                         "reason": "missed"}}


def raw_posts(port: int, count: int, threads: int, client: str) -> float:
    """Seconds for `threads` plain posters (a connection pool each) to post `count` alerts,
    with `requests` or with urllib3, which the Deliverer's senders use."""
    local = threading.local()
    now = dt.datetime.now(dt.timezone.utc)
    url = f"http://127.0.0.1:{port}/hook"

    def post(_: int) -> None:
        key = str(uuid.uuid4())
        body = json.dumps(payload(key, now), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if client == "requests":
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            session.post(url, data=body, timeout=10, headers=headers).raise_for_status()
        else:
            pools = getattr(local, "pools", None) or urllib3.PoolManager()
            local.pools = pools
            response = pools.request("POST", url, body=body, headers=headers, timeout=10,
                                     retries=False, redirect=False)
            assert response.status == 200, response.status

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(post, range(count)))
    return time.perf_counter() - started


def main() -> bool:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=ALERTS)
    alert_count = parser.parse_args().alerts
    from app import create_app
    from database import db
    from models import Alert

    passed = True
    port = free_port()
    with bench_database() as database_url, scratch_dir() as scratch, alert_sink(port):
        app = create_app({"DATABASE_URL": database_url, "MONITOR_ENABLED": False,
                          "LOG_LEVEL": "ERROR", "SPOOL_DIR": str(scratch / "spool"),
                          "ALLOW_PRIVATE_WEBHOOK_TARGETS": True,
                          "ALERT_CONCURRENCY_PER_KIND": PER_KIND,
                          "ALERT_CONCURRENCY_PER_CHANNEL": PER_CHANNEL,
                          "BREAKER_RECOVERY_SECONDS": 1.0})
        queue_alerts(app, port, alert_count, payload, secret="bench-secret",
                     due_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1))
        print(f"drain: {machine()}; {alert_count:,} alerts over {CHANNELS} webhook channels, "
              f"ALERT_CONCURRENCY_PER_KIND={PER_KIND}, ALERT_CONCURRENCY_PER_CHANNEL="
              f"{PER_CHANNEL}, sink down for {OUTAGE_SECONDS:g} s first", flush=True)

        with delivering(app):
            time.sleep(OUTAGE_SECONDS)
            refused_in_outage = sink_stats(port)["refused"]
            recover(port)
            recovered = time.perf_counter()
            wait_for_distinct(port, alert_count, 300)
            drain_seconds = time.perf_counter() - recovered
        stats = sink_stats(port)
        with app.app_context():
            states = dict(db.session.execute(
                select(Alert.state, func.count()).group_by(Alert.state)).all())
            db.session.remove()
            db.engine.dispose()

        raw_rates = {client: alert_count / raw_posts(port, alert_count, PER_KIND, client)
                     for client in ("urllib3", "requests")}
        drain_rate, raw_rate = alert_count / drain_seconds, raw_rates["urllib3"]
        print(f"  sink refused {refused_in_outage} deliveries during the outage (breakers "
              "opened)")
        print(f"  Deliverer after recovery: {drain_seconds:.2f} s, {drain_rate:.0f} alerts/s; "
              f"sink got {stats['distinct']:,} distinct, {stats['duplicates']} duplicates; "
              f"database: {states}")
        for client, rate in raw_rates.items():
            print(f"  baseline, {PER_KIND} plain {client} posters: {rate:.0f} posts/s")
        passed &= report("drain rate", f"{drain_rate:.0f} alerts/s, ratio to raw urllib3 "
                         f"posting {drain_rate / raw_rate:.2f} (target >= 500 alerts/s)",
                         drain_rate >= 500)
        exactly_once = (stats["distinct"] == alert_count and stats["duplicates"] == 0
                        and states.get("delivered") == alert_count)
        passed &= report("drain exactly once", f"{stats['distinct']:,} distinct of "
                         f"{alert_count:,}, {stats['duplicates']} duplicates, "
                         f"{states.get('delivered', 0):,} "
                         "recorded delivered", exactly_once)
    return passed


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
