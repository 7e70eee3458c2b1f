"""A channel the current settings would refuse is reported at start-up, not at the first alert."""
from __future__ import annotations

import requests

from channels import create_channel
from tests.helpers import wait_until

WARNING = "cannot deliver under the current settings"


def test_channels_the_settings_refuse_are_logged_at_start_and_unhealthy_in_dependencies(
        make_app, serve, sink, clock, caplog):
    before = make_app()  # loopback targets allowed, no SMTP_URL needed to save
    with before.app_context():
        inward = create_channel({"name": "inward", "kind": "webhook", "url": sink.url},
                                clock.now()).id
        mail = create_channel({"name": "mail", "kind": "email",
                               "addresses": ["oncall@example.test"]}, clock.now()).id
        create_channel({"name": "public", "kind": "webhook",
                        "url": "https://93.184.215.14/hook"}, clock.now())

    restarted = make_app(ALLOW_PRIVATE_WEBHOOK_TARGETS=False, MONITOR_ENABLED=True)
    wait_until(lambda: caplog.text.count(WARNING) == 2, message="refused channels not logged")
    assert "channel %d (inward, webhook)" % inward in caplog.text
    assert "channel %d (mail, email)" % mail in caplog.text
    assert "SMTP_URL is not configured" in caplog.text

    health = requests.get(serve(restarted).url + "/health/dependencies", timeout=10).json()
    channels = {entry["channel_id"]: entry for entry in health["dependencies"]
                if entry["kind"] == "channel"}
    assert set(channels) == {inward, mail}
    assert {(entry["healthy"], entry["state"]) for entry in channels.values()} == {
        (False, "refused")}
    assert "a loopback address" in channels[inward]["detail"]
    assert health["status"] == "degraded"
