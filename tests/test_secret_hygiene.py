"""§7: every kind of secret, sent through every path, never comes back out.

Secrets: API keys, a channel's signing secret, a header token, a password and a token in a
webhook URL, a Slack URL, the SMTP password and the Sentry DSN key. Outputs: every API answer,
the error log (JSON and CSV), health, metrics, OpenAPI, docs, the dashboard HTML, the log lines
and the events that reach Sentry.
"""
from __future__ import annotations

import json

import sentry_sdk

from tests.conftest import Client, make_key

SMTP_PASSWORD = "smtpPassw0rd9"
CHANNEL_SECRET = "whsecChannel1234"
HEADER_TOKEN = "hdrToken9876"
URL_PASSWORD = "urlPassw0rd7"
URL_TOKEN = "qsToken555"
SLACK_PATH = "slackSecretPath42"
DSN_KEY = "dsnKey0123456789"


def careless(secrets: list[str]):
    """A view that fails with secrets in its message, as careless code might."""
    def view():
        raise RuntimeError("could not deliver: " + " ".join(secrets))
    return view


def sign_in(client: Client, key: str) -> None:
    page = client.get("/login").text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = client.post("/login", data={"api_key": key, "csrf_token": token},
                           allow_redirects=False)
    assert response.status_code == 302


def test_no_secret_reaches_any_output(make_app, serve, sink, sentry_sink, capfd):
    smtp_url = f"smtp://mailer:{SMTP_PASSWORD}@127.0.0.1:1"  # nothing listens: email fails
    dsn = f"http://{DSN_KEY}@127.0.0.1:{sentry_sink.port}/1"
    app = make_app(SMTP_URL=smtp_url, SENTRY_DSN=dsn, LOG_FORMAT="json", LOG_LEVEL="INFO",
                   ALERT_TIMEOUT_SECONDS=2)
    key, read_only_key = make_key(app), make_key(app, "viewer", read_only=True)
    secrets = [key, key.split("_", 2)[2], read_only_key, read_only_key.split("_", 2)[2],
               SMTP_PASSWORD, CHANNEL_SECRET, HEADER_TOKEN, URL_PASSWORD, URL_TOKEN,
               SLACK_PATH, DSN_KEY]
    app.add_url_rule("/careless", "careless", careless(
        [smtp_url, dsn, f"secret={CHANNEL_SECRET}", f"Authorization: Bearer {key}"]))
    live = serve(app)
    outputs: dict[str, str] = {}

    def keep(name: str, response) -> dict | None:
        outputs[name] = f"{dict(response.headers)}\n{response.text}"
        is_json = response.headers.get("Content-Type", "").startswith("application/json")
        return response.json() if is_json else None

    api, viewer = Client(live.url, key), Client(live.url, read_only_key)
    host = live.url.split("//", 1)[1]
    sink_port = sink.url.rsplit(":", 1)[1].split("/", 1)[0]
    webhook = keep("create webhook", api.post("/api/v1/channels", json={
        "name": "hook", "kind": "webhook", "secret": CHANNEL_SECRET,
        "headers": {"Authorization": f"Bearer {HEADER_TOKEN}"},
        "url": f"http://hook:{URL_PASSWORD}@127.0.0.1:{sink_port}/hook?token={URL_TOKEN}"}))
    slack = keep("create slack", api.post("/api/v1/channels", json={
        "name": "chat", "kind": "slack",
        "url": f"http://127.0.0.1:{sink_port}/services/T0/B0/{SLACK_PATH}"}))
    email = keep("create email", api.post("/api/v1/channels", json={
        "name": "mail", "kind": "email", "addresses": ["ops@example.com"]}))
    channel_ids = [webhook["id"], slack["id"], email["id"]]
    for channel_id in channel_ids:
        keep(f"get channel {channel_id}", viewer.get(f"/api/v1/channels/{channel_id}"))
        keep(f"test channel {channel_id}", api.post(f"/api/v1/channels/{channel_id}/test"))
    keep("patch webhook", api.patch(f"/api/v1/channels/{webhook['id']}",
                                    json={"name": "hook2", "secret": CHANNEL_SECRET}))
    keep("list channels", viewer.get("/api/v1/channels"))

    application = keep("create application", api.post("/api/v1/applications", json={
        "name": "job", "period_seconds": 60, "channels": channel_ids}))
    keep("ping", Client(live.url).get(f"/ping/{application['uuid']}/fail"))
    with app.app_context():
        app.extensions["hbmon"].deliverer.drain(15)
    alerts = keep("list alerts", viewer.get("/api/v1/alerts"))["items"]
    assert len(alerts) == 3
    for alert in alerts:
        keep(f"alert {alert['id']}", viewer.get(f"/api/v1/alerts/{alert['id']}"))
    assert len(sink.received) >= 2  # the webhook and Slack alerts went out

    keep("careless", Client(live.url).get("/careless"))
    errors = keep("list errors", viewer.get("/api/v1/errors"))["items"]
    assert errors, "the failure was not logged"
    for error in errors:
        keep(f"error {error['id']}", viewer.get(f"/api/v1/errors/{error['id']}"))
    keep("errors csv", viewer.get("/api/v1/errors?format=csv"))
    keep("error stats", viewer.get("/api/v1/errors/stats"))
    for path in ("/health", "/health/dependencies", "/metrics", "/openapi.json", "/docs"):
        keep(path, Client(live.url).get(path))
    browser = Client(live.url)
    sign_in(browser, key)
    keep("dashboard", browser.get("/"))

    sentry_sdk.flush(timeout=10)
    assert sentry_sink.arrived.wait(10), "the careless failure did not reach Sentry"
    outputs["sentry events"] = json.dumps(sentry_sink.events())
    captured = capfd.readouterr()
    outputs["logs"] = captured.out + captured.err
    assert "could not deliver" in outputs["logs"] and "could not deliver" in outputs["error 1"]
    assert f"127.0.0.1:{sink_port}" in outputs["get channel 1"]  # the URL is shown, masked
    assert host and "hook2" in outputs["list channels"]
    for name, text in outputs.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked into {name}"
