"""Counting every request served: the Prometheus counter and the error-rate window."""
from __future__ import annotations

import logging

from flask import Flask, Response, request

from monitoring import metrics
from runtime import Runtime, current_runtime

log = logging.getLogger(__name__)

UNMATCHED_ROUTE = "unmatched"
# Probes and scrapes are not traffic: they would dilute the error rate.
NOT_COUNTED_FOR_ERROR_RATE = {"monitoring.metrics", "monitoring.health",
                              "monitoring.health_dependencies"}


def count_response(runtime: Runtime, method: str, route: str, endpoint: str | None,
                   status: int) -> None:
    """Count one response by method, URL rule (not raw path) and status."""
    metrics.HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
    if endpoint not in NOT_COUNTED_FOR_ERROR_RATE:
        runtime.request_counter.count(runtime.clock.now(), status >= 500)


def instrument_requests(app: Flask) -> None:
    """Count each response Flask serves (the ping fast path counts its own)."""

    @app.after_request
    def _count_response(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else UNMATCHED_ROUTE
        count_response(current_runtime(), request.method, route, request.endpoint, response.status_code)
        return response
