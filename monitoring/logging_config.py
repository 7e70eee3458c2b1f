"""Logging: one JSON object a line (or readable text), each line carrying its request id and
none carrying a secret."""
from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from monitoring.scrubbing import scrub_text
from utils.request_id import current_request_id

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id() or "-"
        return True


class ScrubbingJsonFormatter(JsonFormatter):
    """JSON lines with secrets removed from the message, extras and traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub_text(super().format(record))


class ScrubbingTextFormatter(logging.Formatter):
    """Readable lines with secrets removed from the message and traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub_text(super().format(record))


def configure_logging(log_format: str, level: str) -> None:
    """Install one stderr handler on the root logger; safe to call more than once."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_hbmon", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._hbmon = True
    if log_format == "json":
        handler.setFormatter(ScrubbingJsonFormatter(
            JSON_FIELDS, rename_fields={"levelname": "level", "asctime": "time"}))
    else:
        handler.setFormatter(ScrubbingTextFormatter(TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
