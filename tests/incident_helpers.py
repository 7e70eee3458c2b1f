"""Shared steps of the incident-response tests: channels, applications, what was queued."""
from __future__ import annotations


def make_channel(api, name: str, sink) -> int:
    response = api.post("/api/v1/channels", json={"name": name, "kind": "webhook",
                                                  "url": sink.url})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def make_application(api, **fields) -> dict:
    body = {"name": "job", "period_seconds": 60, "grace_seconds": 30, **fields}
    response = api.post("/api/v1/applications", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def queued(api) -> list[tuple[str, int, dict]]:
    """Every alert queued so far, oldest first: (event, channel id, payload)."""
    items = api.get("/api/v1/alerts", params={"limit": 200}).json()["items"]
    return [(item["event"], item["channel_id"], item["payload"]) for item in reversed(items)]


def events(api) -> list[tuple[str, int]]:
    return [(event, channel) for event, channel, _ in queued(api)]


def go_down(api, anonymous, runtime, clock, uuid: str) -> dict:
    """Ping, then let the deadline and grace (60 + 30 s) pass: the application's open incident.
    The monitor ticks along the way, as it would (a longer silence of it is an outage gap)."""
    assert anonymous.get(f"/ping/{uuid}").status_code == 200
    for _ in range(4):
        clock.advance(seconds=23)
        runtime.monitor.tick()
    return open_incident(api, uuid)


def open_incident(api, uuid: str) -> dict | None:
    items = api.get(f"/api/v1/applications/{uuid}/incidents").json()["items"]
    return items[0] if items and items[0]["resolved_at"] is None else None
