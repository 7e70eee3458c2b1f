"""Alerts on time (SPEC §6.4a): lag from a destination's recovery to each alert's delivery, and
what an Apprise delivery costs next to a bare webhook.

1. 1,000 alerts over 10 webhook channels are queued while the sink (bench/sink.py, its own
   process) answers 503; the Deliverer runs as in production (its loop in a thread, real
   time) through an outage long enough to open every breaker and back off every alert, then
   the sink recovers. The lag of each alert is its `delivered_at` minus the moment of recovery.
   Target: p99 <= BREAKER_RECOVERY_SECONDS + two monitor intervals + the drain time of 1,000
   alerts at 500 alerts/s.
2. The same sink fed N alerts one at a time through `Transports.attempt`: a `webhook` channel
   and an `apprise` channel (`json://` to the same sink), side by side in one run; CPU and wall
   time per alert, and their ratio.
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
import uuid

from sqlalchemy import func, select

from alert_sink import (CHANNELS, alert_sink, delivering, queue_alerts, recover, sink_stats,
                        wait_for_distinct)
from common import bench_database, free_port, machine, report, scratch_dir

ALERTS = 1_000
RECOVERY_SECONDS = 5.0
INTERVAL_SECONDS = 2.0
OUTAGE_SECONDS = 20.0
DRAIN_RATE = 500  # alerts/s the target allows for the sends themselves
COST_ALERTS = 500


def payload(alert_uuid: str, now: dt.datetime) -> dict:
    """An application.down payload as outbox.build_payload writes it."""
    stamp = now.isoformat().replace("+00:00", "Z")
    return {"event": "application.down", "alert_id": alert_uuid, "occurred_at": stamp,
            "application": {"uuid": str(uuid.uuid4()), "name": "nightly-backup",
                            "status": "down", "last_heartbeat_at": stamp,
                            "schedule": {"period_seconds": 86400, "cron": None,
                                         "timezone": "UTC", "grace_seconds": 3600,
                                         "text": "every 1 d, grace 1 h"},
                            "url": "https://heartbeats.example.com/applications/x"},
            "last_heartbeat": {"kind": "fail", "received_at": stamp, "exit_code": 2,
                               "message": "pg_dump: error: connection refused\n" * 20,
                               "message_truncated": False},
            "incident": {"id": 1, "started_at": stamp, "resolved_at": None, "reason": "failed"},
            "ack_url": "https://heartbeats.example.com/acknowledge/token"}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def recovery_lag(database_url: str, scratch, port: int, alert_count: int,
                 outage_seconds: float) -> bool:
    from app import create_app
    from database import db
    from models import Alert

    app = create_app({"DATABASE_URL": database_url, "MONITOR_ENABLED": False,
                      "LOG_LEVEL": "ERROR", "SPOOL_DIR": str(scratch / "spool"),
                      "ALLOW_PRIVATE_WEBHOOK_TARGETS": True,
                      "BREAKER_RECOVERY_SECONDS": RECOVERY_SECONDS,
                      "MONITOR_INTERVAL_SECONDS": INTERVAL_SECONDS})
    queue_alerts(app, port, alert_count, payload, due_at=dt.datetime.now(dt.timezone.utc))
    print(f"recovery lag: {machine()}; {alert_count:,} alerts over {CHANNELS} webhook channels, "
          f"BREAKER_RECOVERY_SECONDS={RECOVERY_SECONDS:g}, MONITOR_INTERVAL_SECONDS="
          f"{INTERVAL_SECONDS:g}, sink down for {outage_seconds:g} s", flush=True)

    with delivering(app):
        time.sleep(outage_seconds)
        refused = sink_stats(port)["refused"]
        recovered_at = dt.datetime.now(dt.timezone.utc)
        recover(port)
        wait_for_distinct(port, alert_count, 120)
    with app.app_context():
        delivered = db.session.execute(select(Alert.delivered_at).where(
            Alert.state == "delivered")).scalars().all()
        attempts = db.session.execute(select(func.sum(Alert.attempt_count))).scalar()
        db.session.remove()
        db.engine.dispose()
    lags = [(moment - recovered_at).total_seconds() for moment in delivered]
    stats = sink_stats(port)
    bound = RECOVERY_SECONDS + 2 * INTERVAL_SECONDS + alert_count / DRAIN_RATE
    print(f"  sink refused {refused} deliveries during the outage ({attempts} attempts in all); "
          f"after recovery {stats['distinct']:,} distinct, {stats['duplicates']} duplicates")
    if len(lags) < alert_count:
        return report("recovery lag", f"only {len(lags)} of {alert_count} delivered", False)
    p50, p99 = statistics.median(lags), percentile(lags, 0.99)
    return report("recovery lag", f"p50 {p50:.2f} s, p99 {p99:.2f} s, max {max(lags):.2f} s "
                  f"(target p99 <= {bound:g} s = recovery {RECOVERY_SECONDS:g} + 2 x "
                  f"{INTERVAL_SECONDS:g} + {alert_count:,} at {DRAIN_RATE}/s)", p99 <= bound)


def cost_per_alert(port: int, count: int) -> bool:
    from config import Settings
    from transports import Destination, Transports
    from utils.clock import SystemClock

    transports = Transports(Settings.load({"ALLOW_PRIVATE_WEBHOOK_TARGETS": True}),
                            SystemClock())
    destinations = {"webhook": Destination(1, "webhook", url=f"http://127.0.0.1:{port}/hook"),
                    "apprise": Destination(2, "apprise", url=f"json://127.0.0.1:{port}/hook")}
    now = dt.datetime.now(dt.timezone.utc)
    costs = {}
    for kind, destination in [*destinations.items(), *destinations.items()]:  # warm, then measure
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(count):
            alert_uuid = str(uuid.uuid4())
            attempt = transports.attempt(destination, alert_uuid, payload(alert_uuid, now))
            assert attempt.delivered, attempt
        costs[kind] = ((time.process_time() - cpu) / count * 1000,
                       (time.perf_counter() - wall) / count * 1000)
    for kind, (cpu_ms, wall_ms) in costs.items():
        print(f"  {kind}: {cpu_ms:.2f} ms CPU, {wall_ms:.2f} ms wall per alert "
              f"({count} sequential deliveries)")
    ratio = costs["apprise"][0] / costs["webhook"][0]
    return report("apprise cost", f"{costs['apprise'][0]:.2f} ms CPU per alert, "
                  f"{ratio:.1f} x a bare webhook's {costs['webhook'][0]:.2f} ms (recorded, no "
                  "target)", True)


def main() -> bool:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=ALERTS)
    parser.add_argument("--cost-alerts", type=int, default=COST_ALERTS)
    parser.add_argument("--outage-seconds", type=float, default=OUTAGE_SECONDS)
    args = parser.parse_args()
    passed = True
    port = free_port()
    with bench_database() as database_url, scratch_dir() as scratch, alert_sink(port):
        passed &= recovery_lag(database_url, scratch, port, args.alerts, args.outage_seconds)
        passed &= cost_per_alert(port, args.cost_alerts)
    return passed


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
