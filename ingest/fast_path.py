"""The ping URL's fast path: a bodyless ping answered without Flask's request machinery.

Pings are nearly all of a monitor's traffic, and Flask's per-request work (contexts, URL
matching, hooks, response objects) cost several times what storing the heartbeat costs in this
process. A well-formed GET, HEAD or POST of `/ping/<uuid>[/<signal>]` without a body or query
string is parsed, counted against its rate limits, handed to the writer and answered here,
with the headers every response carries (request id, security headers) and counted in the same
metrics. So is a slug ping, `/ping/<ping-key>/<slug>[/<signal>]`, once its application is
known (ingest/slug_routes.py: remembered, or one indexed look-up). It goes through the same
functions as the views in routes.py (parse_uuid, ping_kind, received_signal).

Everything else is the view's: a body, a query string, a malformed UUID or signal. A ping
refused here (rate limit, unknown UUID, spool full) is answered by Flask's error handling in a
request context of its own, as any error is: rendered, logged and counted in one place.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterable, NamedTuple

from flask import Flask

from ingest.signals import (
    PING_ANSWER,
    PING_BODY_LIMIT_HEADER,
    PING_RULE,
    PING_SIGNAL_RULE,
    SLUG_PING_RULE,
    SLUG_PING_SIGNAL_RULE,
    ping_rate_limit_key,
    read_ping_signal,
    received_signal,
)
from ingest.slug_routes import accept_slug_ping
from monitoring.http_metrics import count_response
from runtime import Runtime
from security import API_HEADERS
from utils.request_id import assign_request_id, request_id_for
from utils.request_input import canonical_uuid

PING_PATH = re.compile(r"/ping/([^/]+)(?:/([^/]+))?(?:/([^/]+))?")
FAST_METHODS = {"GET", "HEAD", "POST"}
ANSWER = PING_ANSWER.encode()
ANSWER_HEADERS = [("Content-Type", "text/plain; charset=utf-8"),
                  ("Content-Length", str(len(ANSWER))), PING_BODY_LIMIT_HEADER, *API_HEADERS]

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


class FastPing(NamedTuple):
    application_uuid: str | None  # None for a slug ping, until its route is looked up
    rate_limit_key: str  # the UUID as the URL wrote it, or the slug
    ping_key: str | None
    slug: str | None
    rule: str  # for the metrics
    kind: str
    exit_code: int | None


class PingFastPath:
    """WSGI middleware in front of the Flask app (and behind ProxyFix)."""

    def __init__(self, app: Flask, runtime: Runtime) -> None:
        self.app = app
        self.flask_wsgi_app: WSGIApp = app.wsgi_app
        self.runtime = runtime

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        ping = self._parse(environ)
        if ping is None:
            return self.flask_wsgi_app(environ, start_response)
        runtime, method = self.runtime, environ["REQUEST_METHOD"]
        client = environ.get("REMOTE_ADDR") or "unknown"
        try:
            runtime.rate_limits.check_heartbeat(ping.rate_limit_key, client)
            now = runtime.clock.now()
            signal = received_signal(ping.kind, received_at=now, remote_addr=client,
                                     user_agent=environ.get("HTTP_USER_AGENT", ""),
                                     exit_code=ping.exit_code, method=method)
            if ping.application_uuid is not None:
                runtime.writer.accept(ping.application_uuid, signal)
            else:
                accept_slug_ping(runtime.writer, runtime.slug_routes.route_to_application(
                    ping.ping_key, ping.slug, now), signal)
        except Exception as error:  # AppErrors, and anything unexpected: answered as Flask would
            return self._refuse(environ, start_response, error)
        count_response(runtime, method, ping.rule,
                       "ping.ping" if ping.slug is None else "ping.slug_ping", 200)
        start_response("200 OK", [*ANSWER_HEADERS, ("X-Request-ID", request_id_for(
            environ.get("HTTP_X_REQUEST_ID", "")))])
        return [] if method == "HEAD" else [ANSWER]

    def _refuse(self, environ: dict[str, Any], start_response: Callable,
                error: Exception) -> Iterable[bytes]:
        """Answer a refused ping as Flask answers any error: the envelope, the response hooks
        (request id, security headers, metrics), the error log for a 5xx."""
        with self.app.request_context(environ):
            assign_request_id()
            response = self.app.make_response(self.app.handle_user_exception(error))
            response = self.app.process_response(response)
            return response(environ, start_response)

    @staticmethod
    def _parse(environ: dict[str, Any]) -> FastPing | None:
        """The ping, or None for Flask's view."""
        if environ.get("REQUEST_METHOD") not in FAST_METHODS or environ.get("QUERY_STRING") \
                or environ.get("CONTENT_LENGTH", "0") not in ("", "0") \
                or "HTTP_TRANSFER_ENCODING" in environ:
            return None
        match = PING_PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None:
            return None
        first, second, third = match.groups()
        application_uuid = canonical_uuid(first)
        if application_uuid is not None and third is None:
            signal = read_ping_signal(second)
            if signal is None:  # the view refuses it
                return None
            return FastPing(application_uuid, first, None, None,
                            PING_RULE if second is None else PING_SIGNAL_RULE, *signal)
        if application_uuid is not None or second is None:  # the view refuses it
            return None
        signal = read_ping_signal(third)
        if signal is None:
            return None
        return FastPing(None, ping_rate_limit_key({"slug": second}), first, second,
                        SLUG_PING_RULE if third is None else SLUG_PING_SIGNAL_RULE, *signal)
