"""The operators' dashboard at / (§6.7): sign in with an API key, then watch everything at once.

The session cookie (signed with SECRET_KEY) holds only the key's id and a CSRF token; the key
is checked again on every page, so revoking it signs the browser out.
"""
from __future__ import annotations

import datetime as dt
import hmac
import secrets
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Request,
    Response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from sqlalchemy import case, select

from applications import status_counts
from auth import authenticate
from config import Settings
from database import db
from delivery import channel_breaker_name
from exceptions import Forbidden, Unauthorized
from models import Alert, ApiKey, Application, Channel, ErrorLog, Incident
from monitoring.error_rate import current_error_rate
from monitoring.health import check_dependencies
from monitoring.scrubbing import scrub_text
from runtime import current_runtime

dashboard_bp = Blueprint("dashboard", __name__)

# Those needing attention first; the whole list is the console's /applications.
MAX_APPLICATIONS = 100
ATTENTION = {"down": 0, "late": 1}
MAX_ROWS = 50
RECENT_ERRORS = 10


class DashboardSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, opened for free when the request carries no cookie.

    Only the dashboard uses a session; pings and API calls never send its cookie, and building
    the cookie's signer for each of them was a measurable share of a ping's cost.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def csrf_token() -> str:
    """The session's CSRF token, created on first use; every form carries it."""
    if "csrf_token" not in session:
        session["csrf_token"] = secrets.token_urlsafe(32)
    return session["csrf_token"]


def check_csrf() -> None:
    expected = session.get("csrf_token", "")
    given = request.form.get("csrf_token", "")
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise Forbidden("The form's CSRF token is missing or stale; reload the page.")


def signed_in_key() -> ApiKey | None:
    """The API key this browser signed in with, if it is still valid."""
    key_id = session.get("api_key_id")
    if not isinstance(key_id, int):
        return None
    api_key = db.session.get(ApiKey, key_id)
    return api_key if api_key is not None and api_key.revoked_at is None else None


def dashboard_overview(settings: Settings, now: dt.datetime) -> dict[str, Any]:
    """Everything the dashboard shows, read at `now`."""
    # First: its database probe ends the session's transaction, which would expire (and
    # reload one by one) every row read before it.
    dependencies = check_dependencies(settings, now)
    applications = list(db.session.execute(
        select(Application).order_by(case(ATTENTION, value=Application.status, else_=2),
                                     Application.name, Application.id)
        .limit(MAX_APPLICATIONS)).scalars())
    incidents = db.session.execute(
        select(Incident, Application).join(Application)
        .where(Incident.resolved_at.is_(None))
        .order_by(Incident.started_at.desc()).limit(MAX_ROWS)).all()
    alerts = list(db.session.execute(
        select(Alert).where(Alert.state != "delivered")
        .order_by(Alert.next_attempt_at, Alert.id).limit(MAX_ROWS)).scalars())
    errors = list(db.session.execute(
        select(ErrorLog).order_by(ErrorLog.last_seen_at.desc(), ErrorLog.id.desc())
        .limit(RECENT_ERRORS)).scalars())
    return {
        "applications": applications,
        "status_counts": status_counts(),
        "incidents": incidents,
        "alerts": alerts,
        "alert_errors": {alert.id: scrub_text(alert.last_error or "") for alert in alerts},
        "errors": errors,
        "error_rate": current_error_rate(now, settings),
        "dependencies": dependencies,
        "breaker_labels": {channel_breaker_name(channel_id): f"channel {name}"
                           for channel_id, name in db.session.execute(
                               select(Channel.id, Channel.name))},
    }


@dashboard_bp.app_context_processor
def _template_helpers() -> dict[str, Any]:
    return {"csrf_token": csrf_token}


@dashboard_bp.get("/")
def index():
    api_key = signed_in_key()
    if api_key is None:
        return redirect(url_for("dashboard.login"))
    runtime = current_runtime()
    settings, now = runtime.settings, runtime.clock.now()
    overview = dashboard_overview(settings, now)
    page = render_template("dashboard.html", now=now, read_only=api_key.read_only, live=True,
                           refresh_seconds=settings.DASHBOARD_REFRESH_SECONDS, **overview)
    db.session.rollback()
    return page


@dashboard_bp.get("/login")
def login():
    if signed_in_key() is not None:
        return redirect(url_for("dashboard.index"))
    return render_template("login.html", error=None)


@dashboard_bp.post("/login")
def login_submit():
    check_csrf()
    try:
        api_key = authenticate(request.form.get("api_key", "").strip())
    except Unauthorized:
        return render_template("login.html", error="That API key is not valid.")
    session.clear()  # a new session on sign-in: no fixation
    session["api_key_id"] = api_key.id
    csrf_token()
    return redirect(url_for("dashboard.index"))


@dashboard_bp.post("/logout")
def logout() -> Response:
    check_csrf()
    session.clear()
    return redirect(url_for("dashboard.login"))
