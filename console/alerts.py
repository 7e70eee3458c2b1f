"""Console: the alert queue and history, one alert with its attempts, retrying a dead one
(alert_manager.py, as the API)."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

import alert_manager
from alert_schemas import AlertListQuerySchema
from console.access import console_blueprint, now, page_context
from console.forms import attempt, load_page_query
from database import db
from models import ALERT_STATES
from monitoring.scrubbing import scrub_text
from runtime import current_runtime

alerts_bp = console_blueprint("console_alerts", "/alerts")

PAGE_SIZE = 50


@alerts_bp.get("")
def index():
    state = request.args.get("state", "")
    query, errors = load_page_query(AlertListQuerySchema(), {"state": state})
    items, next_cursor = alert_manager.list_alerts(
        query.get("state"), PAGE_SIZE, query.get("cursor")) if not errors else ([], None)
    page = render_template("console/alerts.html", alerts=items, next_cursor=next_cursor,
                           state=state, states=ALERT_STATES, errors=errors, live=True,
                           scrub=scrub_text, **page_context())
    db.session.rollback()
    return page


@alerts_bp.get("/<int:alert_id>")
def show(alert_id: int):
    alert = alert_manager.get_alert(alert_id)
    page = render_template("console/alert.html", alert=alert,
                           attempts=alert_manager.alert_attempts(alert), scrub=scrub_text,
                           live=True, **page_context())
    db.session.rollback()
    return page


@alerts_bp.post("/<int:alert_id>/retry")
def retry(alert_id: int):
    runtime = current_runtime()
    _, errors = attempt(lambda: alert_manager.retry_alert(
        alert_id, now(), runtime.settings.ALERT_MAX_AGE_SECONDS))
    if errors:
        db.session.rollback()
        flash("Not retried: " + "; ".join(sum(errors.values(), [])), "error")
    else:
        runtime.deliverer.wake()
        flash(f"Alert {alert_id} queued again.")
    return redirect(url_for("console_alerts.show", alert_id=alert_id))
