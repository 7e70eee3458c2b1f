"""Routes of the service watching itself: the errors API, /metrics and /health (§4, §6.7)."""
from __future__ import annotations

from flask import Blueprint, Response, request

from auth import require_api_key
from monitoring import error_tracking
from monitoring.health import check_dependencies, service_health
from monitoring.metrics import render_metrics
from operations_schemas import (
    DependenciesSchema,
    ErrorListQuerySchema,
    ErrorLogDetailSchema,
    ErrorLogPageSchema,
    ErrorStatsSchema,
    HealthSchema,
)
from runtime import current_runtime

errors_bp = Blueprint("errors", __name__, url_prefix="/api/v1/errors")
monitoring_bp = Blueprint("monitoring", __name__)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@errors_bp.before_request
def _authenticate() -> None:
    require_api_key()


@errors_bp.get("")
def list_errors():
    args = ErrorListQuerySchema().load(request.args.to_dict())
    filters = {name: args.get(name) for name in ("error_type", "resolved", "since", "until")}
    if args["format"] == "csv":
        return Response(error_tracking.export_errors_csv(**filters), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=errors.csv"})
    items, next_cursor = error_tracking.list_errors(**filters, limit=args["limit"],
                                                    cursor=args.get("cursor"))
    return ErrorLogPageSchema().dump({"items": items, "next_cursor": next_cursor})


@errors_bp.get("/stats")
def error_stats():
    return ErrorStatsSchema().dump(error_tracking.error_stats(current_runtime().clock.now()))


@errors_bp.get("/<int:error_id>")
def get_error(error_id: int):
    return ErrorLogDetailSchema().dump(error_tracking.get_error(error_id))


@errors_bp.post("/<int:error_id>/resolve")
def resolve_error(error_id: int):
    error = error_tracking.resolve_error(error_id, current_runtime().clock.now())
    return ErrorLogDetailSchema().dump(error)


@monitoring_bp.get("/metrics")
def metrics():
    body = render_metrics(current_runtime().settings.PROMETHEUS_MULTIPROC_DIR)
    return Response(body, content_type=PROMETHEUS_CONTENT_TYPE)


@monitoring_bp.get("/health")
def health():
    report = service_health(current_runtime().settings, current_runtime().clock.now())
    return HealthSchema().dump(report), 503 if report["status"] == "down" else 200


@monitoring_bp.get("/health/dependencies")
def health_dependencies():
    report = check_dependencies(current_runtime().settings, current_runtime().clock.now())
    return DependenciesSchema().dump(report)
