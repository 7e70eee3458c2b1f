"""Console: the error log, one error's detail, resolving it (monitoring/error_tracking.py)."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from console.access import console_blueprint, now, page_context
from console.forms import load_page_query
from database import db
from monitoring import error_tracking
from operations_schemas import ErrorListQuerySchema

errors_page_bp = console_blueprint("console_errors", "/errors")

PAGE_SIZE = 50


@errors_page_bp.get("")
def index():
    resolved = request.args.get("resolved", "")
    query, errors = load_page_query(ErrorListQuerySchema(), {"resolved": resolved})
    items, next_cursor = error_tracking.list_errors(
        resolved=query.get("resolved"), limit=PAGE_SIZE,
        cursor=query.get("cursor")) if not errors else ([], None)
    page = render_template("console/errors.html", errors_logged=items, next_cursor=next_cursor,
                           resolved=resolved, errors=errors, live=True, **page_context())
    db.session.rollback()
    return page


@errors_page_bp.get("/<int:error_id>")
def show(error_id: int):
    page = render_template("console/error.html", error=error_tracking.get_error(error_id),
                           **page_context())
    db.session.rollback()
    return page


@errors_page_bp.post("/<int:error_id>/resolve")
def resolve(error_id: int):
    error_tracking.resolve_error(error_id, now())
    flash(f"Error {error_id} resolved.")
    return redirect(url_for("console_errors.show", error_id=error_id))
