"""Console: incidents across applications, and acknowledging one (acknowledgements.py)."""
from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for

import incidents
from acknowledgements import MAX_NOTE_CHARS, acknowledge_by_api_key
from console.access import console_blueprint, now, page_context
from console.forms import attempt, load, load_page_query
from database import db
from incident_schemas import AcknowledgeInSchema, IncidentListQuerySchema
from models import INCIDENT_STATES

incidents_bp = console_blueprint("console_incidents", "/incidents")

PAGE_SIZE = 50


@incidents_bp.get("")
def index():
    state = request.args.get("state", "")
    query, errors = load_page_query(IncidentListQuerySchema(), {"state": state})
    items, next_cursor = incidents.list_incidents(
        query.get("state"), PAGE_SIZE, query.get("cursor")) if not errors else ([], None)
    page = render_template("console/incidents.html", incidents=items, next_cursor=next_cursor,
                           state=state, states=INCIDENT_STATES, errors=errors, live=True,
                           **page_context())
    db.session.rollback()
    return page


@incidents_bp.post("/<int:incident_id>/acknowledge")
def acknowledge(incident_id: int):
    note = request.form.get("note", "").strip()
    fields, errors = load(AcknowledgeInSchema(), {"note": note[:MAX_NOTE_CHARS]} if note else {})
    if not errors:
        _, errors = attempt(lambda: acknowledge_by_api_key(
            incident_id, g.console_key.id, fields.get("note"), now()))
    if errors:
        db.session.rollback()
        flash("Not acknowledged: " + "; ".join(sum(errors.values(), [])), "error")
    else:
        flash(f"Incident {incident_id} acknowledged: no more reminders or escalation.")
    target = request.form.get("next", "")
    if target.startswith("/") and not target.startswith("//"):
        return redirect(target)
    return redirect(url_for("console_incidents.index"))
