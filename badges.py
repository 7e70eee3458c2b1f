"""Status badges (§10): public images of an application's or a tag's status, behind a badge key.

- `/badge/<badge-key>/<uuid-or-slug>.svg` — one application, shields-style up / late / down;
  `.json` (and `.shields`) — the shields.io endpoint format. The URLs this service hands out
  name the application by its slug, or by its unique key when it has none, never by its UUID
  (the secret of its ping URL).
- `/badge/<badge-key>/<signature>/<tag>.svg|json|shields` and `/badge/<badge-key>/<signature>.…`
  (every application) — as Healthchecks serves its tag badges: the signature proves the URL
  was made here (GET /api/v3/badges/ lists them); a signature ending in `-2` reports two
  states (late counts as up), else three. `.json` is Healthchecks' own format there.

The badge key is one random key per installation, kept in the database (so every instance
agrees), created on first use. A wrong key, signature or name answers the same 404: a badge
reveals nothing but the status and name it shows.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import html
import secrets

from flask import Blueprint, Response, jsonify
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

import applications
from database import db
from exceptions import NotFound
from models import Application, ApplicationTag, ServiceState
from runtime import current_runtime
from status_rules import status_by_time

badges_bp = Blueprint("badges", __name__)

BADGE_KEY_STATE = "badge_key"
ALL = "*"
ALL_LABEL = "status"
FORMATS = "any(svg,json,shields)"
TWO_STATES = "-2"
SHIELDS_COLORS = {"up": "success", "late": "important", "down": "critical"}
SVG_COLORS = {"up": "#4c1", "late": "#fe7d37", "down": "#e05d44"}


def badge_key(now: dt.datetime) -> str:
    """The installation's badge key, created by whichever process needs it first."""
    state = db.session.get(ServiceState, BADGE_KEY_STATE)
    if state is None:
        dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
        db.session.execute(dialect.insert(ServiceState).values(
            key=BADGE_KEY_STATE, value={"key": secrets.token_urlsafe(18)}, updated_at=now)
            .on_conflict_do_nothing(index_elements=["key"]))
        db.session.commit()
        state = db.session.get(ServiceState, BADGE_KEY_STATE)
    return state.value["key"]


def sign_tag(key: str, tag: str) -> str:
    digest = hmac.new(key.encode(), tag.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:8]


def signed_states(key: str, tag: str, given: str) -> int | None:
    """3 or 2 (states reported) if `given` is this tag's signature, else None."""
    expected = sign_tag(key, tag)
    if hmac.compare_digest(given.encode(), expected.encode()):
        return 3
    if hmac.compare_digest(given.encode(), (expected + TWO_STATES).encode()):
        return 2
    return None


def check_badge_url(site_root: str, key: str, application: Application) -> str:
    name = application.slug or applications.unique_key(application.uuid)
    return f"{site_root}/badge/{key}/{name}.svg"


def tag_badge_urls(site_root: str, key: str, tag: str) -> dict[str, str]:
    """Healthchecks' six URLs of a tag's badge (`*`: every application)."""
    urls = {}
    for fmt in ("svg", "json", "shields"):
        for suffix, states in (("", TWO_STATES), ("3", "")):
            signed = sign_tag(key, tag) + states
            path = signed if tag == ALL else f"{signed}/{tag}"
            urls[fmt + suffix] = f"{site_root}/badge/{key}/{path}.{fmt}"
    return {name: urls[name] for name in ("svg", "svg3", "json", "json3", "shields", "shields3")}


def badge_status(application: Application, now: dt.datetime, states: int = 3) -> str:
    """down, late (three states only) or up: new and paused applications count as up."""
    status, _ = status_by_time(application, now)
    if status == "down":
        return "down"
    return "late" if status == "late" and states == 3 else "up"


# --- Routes --------------------------------------------------------------------------------

def _known_key(given: str) -> str:
    key = badge_key(current_runtime().clock.now())
    if not hmac.compare_digest(given.encode(), key.encode()):
        raise NotFound("No such badge.")
    return key


@badges_bp.get(f"/badge/<badge_key>/<target>.<{FORMATS}:fmt>")
def application_badge(badge_key: str, target: str, fmt: str) -> Response:
    """One application's badge, or every application's (the target is then a signature)."""
    key = _known_key(badge_key)
    states = signed_states(key, ALL, target)
    if states is not None:
        return _group_badge(ALL, states, fmt)
    application = applications.find_application(target)
    if application is None:
        raise NotFound("No such badge.")
    label = application.name or application.slug or ALL_LABEL
    status = badge_status(application, current_runtime().clock.now())
    if fmt == "svg":
        return _svg_response(label, status)
    return _no_cache(jsonify(shields_document(label, status)))


@badges_bp.get(f"/badge/<badge_key>/<signature>/<path:tag>.<{FORMATS}:fmt>")
def tag_badge(badge_key: str, signature: str, tag: str, fmt: str) -> Response:
    key = _known_key(badge_key)
    states = signed_states(key, tag, signature)
    if states is None:
        raise NotFound("No such badge.")
    return _group_badge(tag, states, fmt)


def _group_badge(tag: str, states: int, fmt: str) -> Response:
    query = select(Application)
    if tag != ALL:
        query = query.where(Application.id.in_(
            select(ApplicationTag.application_id).where(ApplicationTag.tag == tag)))
    now = current_runtime().clock.now()
    statuses = [badge_status(application, now) for application in
                db.session.execute(query).scalars()]
    down, late = statuses.count("down"), statuses.count("late")
    status = "down" if down else "late" if late and states == 3 else "up"
    label = ALL_LABEL if tag == ALL else tag
    if fmt == "svg":
        return _svg_response(label, status)
    if fmt == "shields":
        return _no_cache(jsonify(shields_document(label, status)))
    return _no_cache(jsonify({"status": status, "total": len(statuses), "grace": late,
                              "down": down}))


# --- Drawing -------------------------------------------------------------------------------

def shields_document(label: str, status: str) -> dict:
    """shields.io's endpoint format (https://shields.io/badges/endpoint-badge)."""
    return {"schemaVersion": 1, "label": label, "message": status,
            "color": SHIELDS_COLORS[status]}


def text_width(text: str) -> int:
    """About how wide `text` is in 11 px Verdana, the badge font."""
    narrow, wide = set("fijlrtI.,:;'!|() "), set("mwMW@%")
    return sum(4 if char in narrow else 10 if char in wide else 8 if char.isupper() else 7
               for char in text)


def badge_svg(label: str, status: str) -> str:
    label_width, status_width = text_width(label) + 10, text_width(status) + 10
    width = label_width + status_width
    label_text, status_text = html.escape(label), html.escape(status)
    label_x, status_x = label_width / 2, label_width + status_width / 2
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{label_text}: {status_text}"><title>{label_text}: {status_text}</title>'
        '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" '
        'stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{label_width}" height="20" fill="#555"/>'
        f'<rect x="{label_width}" width="{status_width}" height="20" '
        f'fill="{SVG_COLORS[status]}"/><rect width="{width}" height="20" fill="url(#s)"/></g>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif"'
        ' font-size="11">'
        f'<text x="{label_x}" y="15" fill="#010101" fill-opacity=".3">{label_text}</text>'
        f'<text x="{label_x}" y="14">{label_text}</text>'
        f'<text x="{status_x}" y="15" fill="#010101" fill-opacity=".3">{status_text}</text>'
        f'<text x="{status_x}" y="14">{status_text}</text></g></svg>')


def _svg_response(label: str, status: str) -> Response:
    return _no_cache(Response(badge_svg(label, status), mimetype="image/svg+xml"))


def _no_cache(response: Response) -> Response:
    # Badges are embedded in pages elsewhere: fetched from anywhere, never stale in a cache.
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response
