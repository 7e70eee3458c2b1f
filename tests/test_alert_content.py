"""§6.4a: alerts say what happened; email is a real message, sent over STARTTLS or TLS."""
from __future__ import annotations

import email
import email.policy
import email.utils
import ssl
import subprocess

import pytest

from alert_content import MESSAGE_LIMIT
from config import Settings
from tests.conftest import Client, make_key
from tests.sinks import SmtpSink
from transports import Destination, Transports

BASE_URL = "https://heartbeats.example.com"


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (certificate file, key file)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


def server_context(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def starttls_sink(certificate):
    sink = SmtpSink(starttls=server_context(certificate)).start()
    yield sink
    sink.stop()


def failing_application(api, anonymous, channel_ids, body: bytes, exit_code: int) -> dict:
    created = api.post("/api/v1/applications", json={
        "name": "payroll", "cron": "30 2 * * *", "timezone": "Europe/Berlin",
        "grace_seconds": 900, "channels": channel_ids})
    assert created.status_code == 201, created.text
    application = created.json()
    assert anonymous.get(f"/ping/{application['uuid']}").status_code == 200
    assert anonymous.post(f"/ping/{application['uuid']}/{exit_code}",
                          data=body).status_code == 200
    return application


def test_a_down_alert_quotes_the_failing_run_its_schedule_and_links_to_the_application(
        served_app, sink, other_sink):
    app, live = served_app(PUBLIC_BASE_URL=BASE_URL + "/")
    api, anonymous = Client(live.url, make_key(app)), Client(live.url)
    hook = api.post("/api/v1/channels", json={"name": "hook", "kind": "webhook",
                                              "url": sink.url}).json()
    slack = api.post("/api/v1/channels", json={"name": "slack", "kind": "slack",
                                               "url": other_sink.url}).json()
    output = "pg_dump: error: connection refused\n" + "x" * (MESSAGE_LIMIT * 3)
    application = failing_application(api, anonymous, [hook["id"], slack["id"]],
                                      output.encode(), 3)
    app.extensions["hbmon"].deliverer.drain()

    payload = sink.received[0]["json"]
    assert payload["incident"]["reason"] == "failed"
    assert payload["last_heartbeat"] == {
        "kind": "fail", "received_at": payload["application"]["last_heartbeat_at"],
        "exit_code": 3, "message": output[:MESSAGE_LIMIT], "message_truncated": True}
    assert payload["application"]["schedule"]["text"] == \
        "cron 30 2 * * * (Europe/Berlin), grace 15 min"
    assert payload["application"]["url"] == f"{BASE_URL}/applications/{application['uuid']}"
    slack_message = other_sink.received[0]["json"]
    assert slack_message["text"] == "payroll is DOWN (failed, exit code 3)"
    details = slack_message["attachments"][0]["text"]
    assert "Exit code:      3" in details
    assert "    pg_dump: error: connection refused" in details
    assert f"Application:    {BASE_URL}/applications/{application['uuid']}" in details
    assert f"Acknowledge:    {BASE_URL}/acknowledge/" in details


def test_email_is_a_readable_message_sent_over_starttls(make_app, serve, starttls_sink,
                                                         certificate):
    app = make_app(SMTP_URL=starttls_sink.url, SMTP_FROM="monitor@example.test",
                   SMTP_CA_FILE=certificate[0], PUBLIC_BASE_URL=BASE_URL)
    live = serve(app)
    api, anonymous = Client(live.url, make_key(app)), Client(live.url)
    mail = api.post("/api/v1/channels", json={"name": "mail", "kind": "email",
                                              "addresses": ["oncall@example.test"]}).json()
    application = failing_application(api, anonymous, [mail["id"]],
                                      b"disk full <b>&</b> no space left", 28)
    app.extensions["hbmon"].deliverer.drain()

    assert starttls_sink.secure == [True]  # and the server refuses mail before STARTTLS
    message = email.message_from_bytes(starttls_sink.messages[0].content,
                                       policy=email.policy.default)
    assert message["Subject"] == "payroll is DOWN (failed, exit code 28)"
    assert message["From"] == "monitor@example.test"
    assert email.utils.parsedate_to_datetime(message["Date"]).year == 2030  # the clock's
    [alert] = api.get("/api/v1/alerts").json()["items"]
    assert message["Message-ID"] == f"<{alert['uuid']}@heartbeat-monitor>"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    page = message.get_body(("html",)).get_content()
    link = f"{BASE_URL}/applications/{application['uuid']}"
    for expected in ("Reason:         failed: the job reported a failure", "Exit code:      28",
                     "Schedule:       cron 30 2 * * * (Europe/Berlin), grace 15 min",
                     "Last seen:      2030-01-01T00:00:00Z",
                     "    disk full <b>&</b> no space left", f"Application:    {link}"):
        assert expected in text
    assert "<pre>disk full &lt;b&gt;&amp;&lt;/b&gt; no space left</pre>" in page
    assert f'<a href="{link}">Application</a>' in page


def test_email_goes_over_implicit_tls_and_checks_the_certificate(certificate, clock):
    sink = SmtpSink(implicit_tls=server_context(certificate)).start()
    try:
        destination = Destination(id=1, kind="email", addresses=["oncall@example.test"])
        payload = {"event": "channel.test", "alert_id": "a1", "occurred_at": "2030-01-01"}
        trusting = Transports(Settings.load({"SMTP_URL": sink.url,
                                             "SMTP_CA_FILE": certificate[0]}), clock)
        assert trusting.attempt(destination, "a1", payload).outcome == "delivered"
        assert sink.secure == [True]
        distrusting = Transports(Settings.load({"SMTP_URL": sink.url}), clock)
        refused = distrusting.attempt(destination, "a2", payload)
        assert refused.outcome == "transient_error"
        assert "SSLCertVerificationError" in refused.error
        assert len(sink.messages) == 1
    finally:
        sink.stop()
