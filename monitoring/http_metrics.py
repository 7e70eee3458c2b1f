"""Counting every request served: the Prometheus counter and the error-rate window."""
from __future__ import annotations

import logging

from flask import Flask, Response, request

from config import runtime
from monitoring import metrics

log = logging.getLogger(__name__)

UNMATCHED_ROUTE = "unmatched"
# Probes and scrapes are not traffic: they would dilute the error rate.
NOT_COUNTED_FOR_ERROR_RATE = {"monitoring.metrics", "monitoring.health",
                              "monitoring.health_dependencies"}


def instrument_requests(app: Flask) -> None:
    """Count each response by method, URL rule (not raw path) and status."""

    @app.after_request
    def _count_response(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else UNMATCHED_ROUTE
        metrics.HTTP_REQUESTS.labels(method=request.method, route=route,
                                     status=str(response.status_code)).inc()
        if request.endpoint not in NOT_COUNTED_FOR_ERROR_RATE:
            state = runtime()
            state.request_counter.count(state.clock.now(), response.status_code >= 500)
        return response
