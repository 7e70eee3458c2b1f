"""The monitor (SPEC §6.2): every interval, judge the applications whose next check has come.

A plain loop: `tick()` replays what waits in the spools and closes an outage gap (before
judging), claims due applications with `FOR UPDATE SKIP LOCKED` and applies the status rules
to them, then runs the after-judging tasks and at most one housekeeping task. It never dies:
a failed tick is logged, recorded and retried with backoff.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any, Callable

from flask import Flask
from sqlalchemy import select

from alert_content import last_heartbeats_prefetched
from database import db
from incidents import open_incidents
from models import Application
from monitoring import metrics
from monitoring.error_tracking import record_error
from status_rules import next_check_at, status_by_time
from utils.clock import Clock

log = logging.getLogger(__name__)


class Monitor:
    """Judges due applications every interval; a failed tick is recorded and retried.

    Each `housekeeping` task (pruning old rows) runs after judging about once per
    HOUSEKEEPING_SECONDS of the clock, and a tick runs at most one of them: nothing waits on
    them, and no tick carries them all.
    """

    BATCH_SIZE = 500
    HOUSEKEEPING_SECONDS = 60.0

    def __init__(self, app: Flask, clock: Clock, interval_seconds: float,
                 before_judging: list[Callable[[dt.datetime], Any]] | None = None,
                 after_judging: list[Callable[[dt.datetime], Any]] | None = None,
                 housekeeping: list[Callable[[dt.datetime], Any]] | None = None):
        self.app = app
        self.clock = clock
        self.interval_seconds = interval_seconds
        self.before_judging = before_judging or []
        self.after_judging = after_judging or []
        self.housekeeping = housekeeping or []
        self.housekeeping_due_at: list[dt.datetime | None] = [None] * len(self.housekeeping)
        self.failures = 0

    def tick(self) -> int:
        """One pass over the applications that are due now; returns how many changed."""
        started = time.perf_counter()
        now = self.clock.now()
        changed = 0
        with self.app.app_context():
            for task in self.before_judging:
                task(now)
            while True:
                batch_changed, batch_size = judge_due_applications(now, self.BATCH_SIZE)
                changed += batch_changed
                if batch_size < self.BATCH_SIZE:
                    break
            for task in self.after_judging:
                task(now)
            self.keep_house(now)
        metrics.MONITOR_TICK_SECONDS.observe(time.perf_counter() - started)
        return changed

    def keep_house(self, now: dt.datetime) -> None:
        """Run the first housekeeping task that is due, if any."""
        for index, due_at in enumerate(self.housekeeping_due_at):
            if due_at is None or now >= due_at:
                self.housekeeping[index](now)
                self.housekeeping_due_at[index] = now + dt.timedelta(
                    seconds=self.HOUSEKEEPING_SECONDS)
                return

    def run(self, stop: threading.Event) -> None:
        """Tick until `stop` is set; back off after failures, never die."""
        wait = 0.0
        while not stop.wait(wait):
            try:
                self.tick()
                self.failures = 0
                wait = self.interval_seconds
            except Exception as error:
                self.failures += 1
                wait = min(60.0, self.interval_seconds * 2 ** min(self.failures, 5))
                log.warning("monitor tick failed (%d in a row), retrying in %.0f s: %s",
                            self.failures, wait, type(error).__name__)
                with self.app.app_context():
                    db.session.rollback()
                    record_error(error, 500)


def judge_due_applications(now: dt.datetime, limit: int) -> tuple[int, int]:
    """Apply time to up to `limit` due applications, each claimed by one process only."""
    due = db.session.execute(
        select(Application).where(Application.next_check_at <= now)
        .order_by(Application.next_check_at).limit(limit)
        .with_for_update(skip_locked=True)).scalars().all()
    changed = 0
    opening: list[tuple[Application, str]] = []
    for application in due:
        status, reason = status_by_time(application, now)
        if status != application.status:
            previous = application.status
            application.status = status
            application.updated_at = now
            changed += 1
            if status == "down":
                application.last_start_at = None
                if previous != "down":
                    opening.append((application, reason or "missed"))
        application.next_check_at = next_check_at(application)
    if opening:
        with last_heartbeats_prefetched([application for application, _ in opening]):
            open_incidents(opening, now)
    db.session.commit()
    return changed, len(due)


