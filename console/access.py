"""What every console page shares: a signed-in browser, CSRF on every POST, read-only rules.

A read-only key's session sees every page but is offered no control, and the server refuses
any change it sends anyway (403), as the API refuses a read-only key's POST.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, redirect, render_template, request, url_for

from dashboard import check_csrf, signed_in_key
from error_handlers import handle_app_error
from exceptions import AppError, Forbidden
from runtime import current_runtime
from utils.request_id import current_request_id


def console_blueprint(name: str, url_prefix: str) -> Blueprint:
    """A blueprint whose every request passes the console's guard."""
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)
    blueprint.before_request(guard)
    blueprint.register_error_handler(AppError, problem_page)
    return blueprint


def problem_page(error: AppError) -> Response:
    """A browser gets an error of a console page as a page (same status, code and request id);
    any other client the envelope, as from every endpoint. Recorded as every error is."""
    envelope = handle_app_error(error)
    if request.accept_mimetypes.best_match(["application/json", "text/html"]) != "text/html":
        return envelope
    page = Response(render_template("console/problem.html", error=error,
                                    request_id=current_request_id()),
                    status=error.status, mimetype="text/html")
    if "Retry-After" in envelope.headers:
        page.headers["Retry-After"] = envelope.headers["Retry-After"]
    return page


def guard():
    """Sign-in first; then a POST needs its CSRF token and a key that may change things."""
    api_key = signed_in_key()
    if api_key is None:
        if request.method == "POST":
            raise Forbidden("Sign in first.")
        return redirect(url_for("dashboard.login"))
    if request.method == "POST":
        check_csrf()
        if api_key.read_only:
            raise Forbidden("This session signed in with a read-only key: it changes nothing.")
    g.console_key = api_key
    return None


def refuse_read_only() -> None:
    """For the pages that are only a form for a change: a read-only session is not offered
    them either."""
    if g.console_key.read_only:
        raise Forbidden("This session signed in with a read-only key: it changes nothing.")


def page_context() -> dict[str, Any]:
    """What the shared layout needs on every console page."""
    runtime = current_runtime()
    return {"now": runtime.clock.now(), "read_only": g.console_key.read_only,
            "refresh_seconds": runtime.settings.DASHBOARD_REFRESH_SECONDS}


def now():
    return current_runtime().clock.now()
