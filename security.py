"""Response hardening (§7): security headers on every answer, client addresses behind proxies.

Rate limits live in rate_limits.py, webhook target checks in utils/ssrf_guard.py, the dashboard's
CSRF tokens in dashboard.py and API keys in auth.py.
"""
from __future__ import annotations

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

# The console's pages load their stylesheet, script and icon from this host only; the script
# reads pages of this host (live refresh) and nothing else.
HTML_POLICY = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
               "base-uri 'none'")
API_POLICY = "default-src 'none'; frame-ancestors 'none'"


API_HEADERS = (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
               ("Referrer-Policy", "no-referrer"), ("Cross-Origin-Opener-Policy", "same-origin"),
               ("Content-Security-Policy", API_POLICY))
HTML_HEADERS = API_HEADERS[:-1] + (("Content-Security-Policy", HTML_POLICY),
                                   ("Cache-Control", "no-store"))


def add_security_headers(response: Response) -> Response:
    """Each header unless the view set its own (one pass over the headers, not one per name)."""
    wanted = HTML_HEADERS if response.mimetype == "text/html" else API_HEADERS
    present = {name.lower() for name in response.headers.keys()}
    for name, value in wanted:
        if name.lower() not in present:
            response.headers.add(name, value)
    return response


def install_security(app: Flask, trusted_proxy_count: int) -> None:
    """Security headers on every response; with N trusted proxies in front, the client address
    is taken from the N-th X-Forwarded-For entry from the right (never from a client's claim)."""
    app.after_request(add_security_headers)
    if trusted_proxy_count > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=trusted_proxy_count,
                                x_proto=trusted_proxy_count)
