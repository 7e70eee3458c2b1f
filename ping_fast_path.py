"""The ping URL's fast path: a bodyless ping answered without Flask's request machinery.

Pings are nearly all of a monitor's traffic, and Flask's per-request work (contexts, URL
matching, hooks, response objects) cost several times what storing the heartbeat costs in this
process. A well-formed GET, HEAD or POST of `/ping/<uuid>[/<signal>]` without a body or query
string is parsed, counted against its rate limits, handed to the writer and answered here,
with the headers every response carries (request id, security headers) and counted in the same
metrics. It goes through the same functions as the view in routes.py (parse_uuid, ping_kind,
received_signal).

Everything else is the view's: a body, a query string, a malformed UUID or signal. A ping
refused here (rate limit, unknown UUID, spool full, any error) is passed on to Flask with its
error, which the first request hook raises: errors are rendered, logged and counted in one
place, and the refused ping is not counted against its limits twice.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable

from config import Runtime
from monitoring.http_metrics import count_response
from exceptions import AppError
from routes import (PING_ANSWER, PING_RULE, PING_SIGNAL_RULE, parse_uuid, ping_kind,
                    received_signal)
from security import API_HEADERS
from utils.request_id import request_id_for

CARRIED_ERROR = "hbmon.ping_error"
PING_PATH = re.compile(r"/ping/([^/]+)(?:/([^/]+))?")
FAST_METHODS = {"GET", "HEAD", "POST"}
ANSWER = PING_ANSWER.encode()
ANSWER_HEADERS = [("Content-Type", "text/plain; charset=utf-8"),
                  ("Content-Length", str(len(ANSWER))), *API_HEADERS]

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


class PingFastPath:
    """WSGI middleware in front of the Flask app (and behind ProxyFix)."""

    def __init__(self, flask_wsgi_app: WSGIApp, state: Runtime) -> None:
        self.flask_wsgi_app = flask_wsgi_app
        self.state = state

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        parsed = self._parse(environ)
        if parsed is None:
            return self.flask_wsgi_app(environ, start_response)
        application_uuid, written_uuid, signal_part, kind, exit_code = parsed
        state, method = self.state, environ["REQUEST_METHOD"]
        client = environ.get("REMOTE_ADDR") or "unknown"
        try:
            state.rate_limits.check_heartbeat(written_uuid, client)
            state.writer.accept(application_uuid, received_signal(
                kind, received_at=state.clock.now(), remote_addr=client,
                user_agent=environ.get("HTTP_USER_AGENT", ""), exit_code=exit_code))
        except Exception as error:  # answered by Flask, like every other error
            environ[CARRIED_ERROR] = error
            return self.flask_wsgi_app(environ, start_response)
        count_response(state, method, PING_RULE if signal_part is None else PING_SIGNAL_RULE,
                       "ping.ping", 200)
        start_response("200 OK", [*ANSWER_HEADERS, ("X-Request-ID", request_id_for(
            environ.get("HTTP_X_REQUEST_ID", "")))])
        return [] if method == "HEAD" else [ANSWER]

    @staticmethod
    def _parse(environ: dict[str, Any]):
        """(uuid, uuid as written, signal part, kind, exit code), or None for Flask's view."""
        if environ.get("REQUEST_METHOD") not in FAST_METHODS or environ.get("QUERY_STRING") \
                or environ.get("CONTENT_LENGTH", "0") not in ("", "0") \
                or "HTTP_TRANSFER_ENCODING" in environ:
            return None
        match = PING_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None:
            return None
        written_uuid, signal_part = match.groups()
        try:
            application_uuid = parse_uuid(written_uuid)
            kind, exit_code = ping_kind(signal_part)
        except AppError:  # the view answers it, with this error
            return None
        return application_uuid, written_uuid, signal_part, kind, exit_code


def raise_carried_error(environ: dict[str, Any]) -> None:
    """In Flask's first request hook: the error of a ping the fast path refused."""
    error = environ.pop(CARRIED_ERROR, None)
    if error is not None:
        raise error
