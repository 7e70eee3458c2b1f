"""The operator console (SPEC §10): every operator task in the browser, server-rendered.

One blueprint per area; each page calls the same domain functions as the JSON API and validates
its forms with the API's schemas. console/access.py holds the rules every page shares: signed
in, CSRF on every POST, and a read-only session refused any change.
"""
from __future__ import annotations

from flask import Flask

from console.alerts import alerts_bp
from console.application_page import application_page_bp
from console.applications import applications_bp
from console.channels import channels_bp
from console.errors import errors_page_bp
from console.incidents import incidents_bp
from console.maintenance import maintenance_bp

CONSOLE_BLUEPRINTS = (applications_bp, application_page_bp, channels_bp, alerts_bp,
                      incidents_bp, maintenance_bp, errors_page_bp)


def register_console(app: Flask) -> None:
    for blueprint in CONSOLE_BLUEPRINTS:
        app.register_blueprint(blueprint)
