"""Console: maintenance windows — list, create (one-off or recurring), end, delete
(maintenance.py, validated by MaintenanceWindowInSchema as in the API)."""
from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

import maintenance
from console.access import console_blueprint, now, page_context
from console.forms import Errors, attempt, load, load_page_query, number, words
from database import db
from incident_schemas import MaintenanceWindowInSchema, MaintenanceWindowListQuerySchema

maintenance_bp = console_blueprint("console_maintenance", "/maintenance")

PAGE_SIZE = 50


def schema_input(form: MultiDict) -> dict[str, Any]:
    """The form as the JSON body of POST /api/v1/maintenance-windows. Times from the form's
    datetime-local fields are UTC (the schema's default zone); a one-off without a start
    starts now."""
    data: dict[str, Any] = {"name": form.get("name", ""),
                            "applications": words(form.get("applications", "")),
                            "tags": words(form.get("tags", ""))}
    if form.get("kind") == "recurring":
        data.update(cron=form.get("cron", "").strip(),
                    timezone=form.get("timezone", "").strip() or "UTC",
                    duration_seconds=number(form.get("duration_seconds", "")))
    else:
        data.update(starts_at=form.get("starts_at", "").strip() or now().isoformat(),
                    ends_at=form.get("ends_at", "").strip() or None)
    return data


def _page(values: MultiDict | dict, errors: Errors, status: int = 200):
    query, list_errors = load_page_query(MaintenanceWindowListQuerySchema(), {})
    windows, next_cursor = maintenance.list_windows(
        None, now(), PAGE_SIZE, query.get("cursor")) if not list_errors else ([], None)
    moment = now()
    page = render_template("console/maintenance.html", windows=windows, next_cursor=next_cursor,
                           occurrences={window.id: maintenance.occurrence_now(window, moment)
                                        for window in windows},
                           values=values, errors={**errors, **list_errors}, **page_context())
    db.session.rollback()
    return page, status


@maintenance_bp.get("")
def index():
    return _page({"kind": "one_off", "timezone": "UTC"}, {})


@maintenance_bp.post("/new")
def create():
    fields, errors = load(MaintenanceWindowInSchema(), schema_input(request.form))
    if not errors:
        window, errors = attempt(lambda: maintenance.create_window(fields, now()))
    if errors:
        db.session.rollback()
        return _page(request.form, errors, 422)
    flash(f"Maintenance window {window.name} created.")
    return redirect(url_for("console_maintenance.index"))


@maintenance_bp.post("/<int:window_id>/end")
def end(window_id: int):
    window = maintenance.end_window(window_id, now())
    flash(f"Maintenance window {window.name} ended.")
    return redirect(url_for("console_maintenance.index"))


@maintenance_bp.post("/<int:window_id>/delete")
def delete(window_id: int):
    maintenance.delete_window(window_id, now())
    flash("Maintenance window deleted.")
    return redirect(url_for("console_maintenance.index"))
