"""Console: the applications list (filters, search) and the forms that change one application:
create, edit, pause, resume, snooze, delete. Each calls what the API calls (applications.py,
maintenance.py) and validates with the API's schemas (ApplicationInSchema, SnoozeInSchema)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

import applications
import channels
import maintenance
from console.access import console_blueprint, now, page_context, refuse_read_only
from console.forms import Errors, attempt, checked_ids, load, load_page_query, number, words
from database import db
from dependencies import depends_on_uuid
from incident_schemas import SnoozeInSchema
from models import STATUSES, Application
from schemas import ApplicationInSchema, ApplicationListQuerySchema

applications_bp = console_blueprint("console_applications", "/applications")

PAGE_SIZE = 50
ESCALATION_ROWS = 3


@applications_bp.get("")
def index():
    filters = {name: request.args.get(name, "").strip() for name in ("status", "tag", "q")}
    query, errors = load_page_query(ApplicationListQuerySchema(),
                                    {"status": filters["status"], "tag": filters["tag"]},
                                    limit=PAGE_SIZE)
    items, next_cursor = [], None
    if not errors:
        items, next_cursor = applications.list_applications(
            query.get("status"), query.get("tag"), PAGE_SIZE, query.get("cursor"),
            name_contains=filters["q"][:200] or None)
    page = render_template("console/applications.html", applications=items,
                           next_cursor=next_cursor, filters=filters, errors=errors,
                           statuses=STATUSES, tags=applications.known_tags(),
                           status_counts=applications.status_counts(), live=True,
                           **page_context())
    db.session.rollback()
    return page


# --- Create and edit -----------------------------------------------------------------------

def form_values(form: MultiDict) -> dict[str, Any]:
    """What the form showed, to show it again with its errors."""
    values: dict[str, Any] = {name: form.get(name, "") for name in (
        "name", "slug", "description", "tags", "schedule", "period_seconds", "cron", "timezone",
        "grace_seconds", "failure_threshold", "min_duration_seconds", "max_duration_seconds",
        "reminder_interval_seconds", "depends_on")}
    values["channels"] = form.getlist("channels")
    values["escalation"] = [{"after_seconds": form.get(f"escalation-{index}-after", ""),
                             "channels": form.getlist(f"escalation-{index}-channels")}
                            for index in range(ESCALATION_ROWS)]
    return values


def text(value: Any) -> str:
    return "" if value is None else str(value)


def application_values(application: Application) -> dict[str, Any]:
    """An application as its edit form shows it."""
    steps = application.escalation or []
    escalation = [{"after_seconds": str(step["after_seconds"]),
                   "channels": [str(channel) for channel in step["channels"]]}
                  for step in steps]
    escalation += [{"after_seconds": "", "channels": []}] * (ESCALATION_ROWS - len(escalation))
    return {"name": application.name, "slug": text(application.slug),
            "description": application.description, "tags": " ".join(application.tags),
            "schedule": "cron" if application.cron else "period",
            "period_seconds": text(application.period_seconds), "cron": text(application.cron),
            "timezone": application.timezone, "grace_seconds": text(application.grace_seconds),
            "failure_threshold": text(application.failure_threshold),
            "min_duration_seconds": text(application.min_duration_seconds),
            "max_duration_seconds": text(application.max_duration_seconds),
            "reminder_interval_seconds": text(application.reminder_interval_seconds),
            "depends_on": text(depends_on_uuid(application)),
            "channels": [str(channel.id) for channel in application.channels],
            "escalation": escalation}


NEW_VALUES = {"name": "", "slug": "", "description": "", "tags": "", "schedule": "period",
              "period_seconds": "86400", "cron": "", "timezone": "UTC", "grace_seconds": "3600",
              "failure_threshold": "1", "min_duration_seconds": "", "max_duration_seconds": "",
              "reminder_interval_seconds": "0", "depends_on": "", "channels": [],
              "escalation": [{"after_seconds": "", "channels": []}] * ESCALATION_ROWS}


def schema_input(form: MultiDict) -> dict[str, Any]:
    """The form as the JSON body the API's ApplicationInSchema reads."""
    data: dict[str, Any] = {
        "name": form.get("name", ""), "description": form.get("description", ""),
        "tags": words(form.get("tags", "")), "slug": form.get("slug", "").strip() or None,
        "timezone": form.get("timezone", "").strip() or "UTC",
        "channels": checked_ids(form, "channels"),
        "min_duration_seconds": number(form.get("min_duration_seconds", "")),
        "max_duration_seconds": number(form.get("max_duration_seconds", "")),
        "depends_on": form.get("depends_on", "").strip() or None,
    }
    for name in ("grace_seconds", "failure_threshold", "reminder_interval_seconds"):
        value = number(form.get(name, ""))
        if value is not None:
            data[name] = value
    if form.get("schedule") == "cron":
        data["cron"], data["period_seconds"] = form.get("cron", "").strip(), None
    else:
        data["period_seconds"], data["cron"] = number(form.get("period_seconds", "")), None
    steps = []
    for index in range(ESCALATION_ROWS):
        after = number(form.get(f"escalation-{index}-after", ""))
        step_channels = checked_ids(form, f"escalation-{index}-channels")
        if after is not None or step_channels:
            steps.append({"after_seconds": after, "channels": step_channels})
    data["escalation"] = steps or None
    return data


def _form_page(values: dict[str, Any], errors: Errors, application: Application | None,
               status: int = 200):
    page = render_template("console/application_form.html", values=values, errors=errors,
                           application=application, channels=channels.list_channels(),
                           escalation_rows=ESCALATION_ROWS, **page_context())
    db.session.rollback()
    return page, status


@applications_bp.get("/new")
def new():
    refuse_read_only()
    return _form_page(NEW_VALUES, {}, None)


@applications_bp.post("/new")
def create():
    fields, errors = load(ApplicationInSchema(), schema_input(request.form))
    if not errors:
        application, errors = attempt(lambda: applications.create_application(fields, now()),
                                      conflict_field="slug")
    if errors:
        db.session.rollback()
        return _form_page(form_values(request.form), errors, None, 422)
    flash(f"Created {application.name}.")
    return redirect(url_for("console_application.show", uuid=application.uuid))


@applications_bp.get("/<uuid:uuid>/edit")
def edit(uuid):
    refuse_read_only()
    application = applications.get_application(str(uuid))
    return _form_page(application_values(application), {}, application)


@applications_bp.post("/<uuid:uuid>/edit")
def update(uuid):
    application = applications.get_application(str(uuid))
    fields, errors = load(ApplicationInSchema(partial=True), schema_input(request.form))
    if not errors:
        _, errors = attempt(lambda: applications.update_application(
            application.uuid, fields, now()), conflict_field="slug")
    if errors:
        db.session.rollback()
        return _form_page(form_values(request.form), errors,
                          applications.get_application(str(uuid)), 422)
    flash("Saved.")
    return redirect(url_for("console_application.show", uuid=application.uuid))


# --- Pause, resume, snooze, delete ---------------------------------------------------------

def back_to(uuid: str):
    """Where an action returns: the page it came from (a local path), else the application."""
    target = request.form.get("next", "")
    if target.startswith("/") and not target.startswith("//"):
        return redirect(target)
    return redirect(url_for("console_application.show", uuid=uuid))


@applications_bp.post("/<uuid:uuid>/pause")
def pause(uuid):
    application = applications.pause_application(str(uuid), now())
    flash(f"Paused {application.name}.")
    return back_to(application.uuid)


@applications_bp.post("/<uuid:uuid>/resume")
def resume(uuid):
    application = applications.resume_application(str(uuid), now())
    flash(f"Resumed {application.name}: it waits for its next heartbeat.")
    return back_to(application.uuid)


@applications_bp.post("/<uuid:uuid>/snooze")
def snooze(uuid):
    application = applications.get_application(str(uuid), for_update=True)
    minutes = number(request.form.get("minutes", ""))
    until = now() + dt.timedelta(minutes=minutes) if isinstance(minutes, int) else None
    fields, errors = load(SnoozeInSchema(), {"until": until.isoformat() if until else ""})
    if not errors:
        _, errors = attempt(lambda: maintenance.snooze(application, fields["until"], now()))
    if errors:
        db.session.rollback()
        flash("Not snoozed: " + "; ".join(sum(errors.values(), [])), "error")
    else:
        flash(f"Snoozed {application.name}: alerts held until "
              f"{fields['until'].strftime('%Y-%m-%d %H:%M UTC')}.")
    return back_to(str(uuid))


@applications_bp.post("/<uuid:uuid>/snooze/end")
def end_snooze(uuid):
    application = applications.get_application(str(uuid), for_update=True)
    maintenance.end_snooze(application, now())
    flash(f"Snooze of {application.name} ended.")
    return back_to(str(uuid))


@applications_bp.get("/<uuid:uuid>/delete")
def confirm_delete(uuid):
    application = applications.get_application(str(uuid))
    page = render_template("console/application_delete.html", application=application,
                           **page_context())
    db.session.rollback()
    return page


@applications_bp.post("/<uuid:uuid>/delete")
def delete(uuid):
    application = applications.get_application(str(uuid))
    name = application.name
    applications.delete_application(application.uuid, now())
    flash(f"Deleted {name}.")
    return redirect(url_for("console_applications.index"))
