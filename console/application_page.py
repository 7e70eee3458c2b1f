"""Console: one application's page — status, ping URL with snippets, run durations, the 24 h
and 7 day timelines, the heartbeat log (bodies on their own page) and its incidents."""
from __future__ import annotations

import datetime as dt

from flask import render_template, request
from sqlalchemy import select

import applications
import console.history as history
from badges import badge_key, check_badge_url
from console.access import console_blueprint, page_context
from database import db
from exceptions import NotFound
from maintenance import current_snooze, request_windows
from models import Heartbeat
from schemas import PageQuerySchema, public_base_url
from utils.request_input import query_args

application_page_bp = console_blueprint("console_application", "/applications")

LOG_PAGE_SIZE = 50
SNOOZE_CHOICES = ((15, "15 minutes"), (60, "1 hour"), (240, "4 hours"), (1440, "24 hours"),
                  (10080, "7 days"))
INCIDENTS_SHOWN = 20
# (label, span, tick every, tick label)
TIMELINES = (("24 hours", dt.timedelta(hours=24), dt.timedelta(hours=6), "%H:%M"),
             ("7 days", dt.timedelta(days=7), dt.timedelta(days=1), "%b %d"))


def snippets(ping_url: str, schedule: str) -> dict[str, str]:
    """Ready-to-paste ways to ping: a crontab line, and start + exit status around a job."""
    curl = "curl -fsS -m 10 --retry 5 -o /dev/null"
    return {
        "crontab": f"{schedule} /path/to/job.sh && {curl} {ping_url}",
        "start-exit": f"{curl} {ping_url}/start\n/path/to/job.sh\n{curl} {ping_url}/$?",
        "log-body": f"/path/to/job.sh 2>&1 | curl -fsS -m 10 --retry 5 --data-binary @- "
                    f"{ping_url}/$?",
    }


@application_page_bp.get("/<uuid:uuid>")
def show(uuid):
    application = applications.get_application(str(uuid))
    context = page_context()
    now = context["now"]
    args = query_args(PageQuerySchema())
    heartbeats, next_cursor = applications.list_heartbeats(
        application.uuid, min(args["limit"], LOG_PAGE_SIZE), args.get("cursor"))
    incidents, _ = applications.list_incidents(application.uuid, INCIDENTS_SHOWN, None)
    ping_url = f"{public_base_url()}/ping/{application.uuid}"
    schedule = application.cron or "*/5 * * * *"
    badge_svg = check_badge_url(request.url_root.rstrip("/"), badge_key(now), application)
    runs = history.recent_runs(application)
    page = render_template(
        "console/application.html", application=application, heartbeats=heartbeats,
        next_cursor=next_cursor, incidents=incidents, ping_url=ping_url,
        snippets=snippets(ping_url, schedule), badge_svg=badge_svg,
        badge_json=badge_svg[:-len(".svg")] + ".json",
        duration_chart=history.duration_chart(runs),
        timelines=[(label, history.timeline_svg(history.timeline_chart(
            history.status_timeline(application, now, span), now, span, tick), label, ticks))
            for label, span, tick, ticks in TIMELINES],
        in_maintenance=bool(request_windows(now).covering(application)),
        snooze=current_snooze(application, now), snooze_choices=SNOOZE_CHOICES, live=True,
        **context)
    db.session.rollback()
    return page


@application_page_bp.get("/<uuid:uuid>/heartbeats/<uuid:heartbeat_uuid>")
def heartbeat_body(uuid, heartbeat_uuid):
    """One heartbeat with its whole body: read only when asked for."""
    application = applications.get_application(str(uuid))
    heartbeat = db.session.execute(select(Heartbeat).where(
        Heartbeat.uuid == str(heartbeat_uuid),
        Heartbeat.application_id == application.id)).scalar_one_or_none()
    if heartbeat is None:
        raise NotFound(f"No heartbeat {heartbeat_uuid} for this application.")
    page = render_template("console/heartbeat.html", application=application,
                           heartbeat=heartbeat, **page_context())
    db.session.rollback()
    return page
