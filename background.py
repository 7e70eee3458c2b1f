"""Background work of a serving process: the monitor and alert delivery, with a clean stop."""
from __future__ import annotations

import atexit
import logging
import threading

import click
from flask import Flask

from runtime import EXTENSION_KEY

log = logging.getLogger(__name__)


class Background:
    """The monitor and delivery threads; `stop()` lets each finish its current unit of work."""

    def __init__(self, app: Flask):
        self.app = app
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> "Background":
        runtime = self.app.extensions[EXTENSION_KEY]
        for name, target in (("hbmon-monitor", runtime.monitor.run),
                             ("hbmon-delivery", runtime.deliverer.run)):
            thread = threading.Thread(target=target, args=(self.stop_event,), name=name,
                                      daemon=True)
            thread.start()
            self.threads.append(thread)
        # Channels these settings would refuse are logged now, not found at the first alert.
        threading.Thread(target=runtime.channel_audit.refused, name="hbmon-channel-audit",
                         daemon=True).start()
        log.info("monitor and alert delivery started")
        return self

    def stop(self, timeout_seconds: float = 15.0) -> None:
        self.stop_event.set()
        deliverer = self.app.extensions[EXTENSION_KEY].deliverer
        deliverer.wake()
        for thread in self.threads:
            thread.join(timeout_seconds)
        deliverer.shutdown(wait=True)

    def wait(self) -> None:
        """Block until stopped (the `flask monitor` foreground loop)."""
        while not self.stop_event.wait(1.0):
            pass


def serving_process() -> bool:
    """False inside a Flask CLI command other than `run` (migrations, keys, `flask monitor`)."""
    context = click.get_current_context(silent=True)
    return context is None or context.info_name == "run"


def start_background(app: Flask) -> Background:
    background = Background(app).start()
    app.extensions[EXTENSION_KEY].background = background
    atexit.register(background.stop, 5.0)
    return background
