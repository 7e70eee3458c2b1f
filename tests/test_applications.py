"""§4: operators manage applications over the API."""
from __future__ import annotations

import pytest

from tests.helpers import assert_envelope


def test_operator_flow_from_create_to_delete(api, anonymous, clock):
    created = api.post("/api/v1/applications", json={
        "name": "invoice-run", "description": "sends invoices", "period_seconds": 600,
        "grace_seconds": 60, "tags": ["billing"]})
    assert created.status_code == 201
    app = created.json()
    assert app["status"] == "new" and app["ping_url"].endswith(f"/ping/{app['uuid']}")

    assert anonymous.get(f"/ping/{app['uuid']}").status_code == 200
    clock.advance(seconds=30)
    beat = anonymous.post(f"/api/v1/applications/{app['uuid']}/heartbeats",
                          json={"message": "42 invoices"})
    assert beat.status_code == 202

    listed = api.get("/api/v1/applications").json()["items"]
    assert [a["uuid"] for a in listed] == [app["uuid"]]
    state = api.get(f"/api/v1/applications/{app['uuid']}").json()
    assert state["status"] == "up"
    assert state["last_heartbeat_at"] == "2030-01-01T00:00:30Z"
    assert state["next_deadline_at"] == "2030-01-01T00:10:30Z"

    anonymous.get(f"/ping/{app['uuid']}/fail")
    assert api.get(f"/api/v1/applications/{app['uuid']}").json()["status"] == "down"

    paused = api.post(f"/api/v1/applications/{app['uuid']}/pause").json()
    assert paused["status"] == "paused"
    resumed = api.post(f"/api/v1/applications/{app['uuid']}/resume").json()
    assert resumed["status"] == "new"

    assert api.delete(f"/api/v1/applications/{app['uuid']}").status_code == 204
    assert_envelope(api.get(f"/api/v1/applications/{app['uuid']}"), 404, "APPLICATION_NOT_FOUND")
    assert_envelope(anonymous.get(f"/ping/{app['uuid']}"), 404, "HEARTBEAT_NOT_FOUND")


def test_list_filters_by_status_and_tag(api, anonymous):
    uuids = {}
    for name, tags in [("a", ["db"]), ("b", ["db", "web"]), ("c", ["web"])]:
        uuids[name] = api.post("/api/v1/applications",
                               json={"name": name, "tags": tags}).json()["uuid"]
    anonymous.get(f"/ping/{uuids['b']}")
    anonymous.get(f"/ping/{uuids['c']}")

    def names(query):
        return sorted(a["name"] for a in api.get(f"/api/v1/applications{query}").json()["items"])

    assert names("?tag=db") == ["a", "b"]
    assert names("?status=up") == ["b", "c"]
    assert names("?status=up&tag=db") == ["b"]
    assert names("?status=new") == ["a"]
    assert_envelope(api.get("/api/v1/applications?status=sleepy"), 422, "VALIDATION_ERROR")


def test_list_pages_through_every_application_once(api):
    for n in range(7):
        api.post("/api/v1/applications", json={"name": f"job-{n}"})
    names, cursor, pages = [], None, 0
    while True:
        page = api.get("/api/v1/applications?limit=3" + (f"&cursor={cursor}" if cursor else ""))
        body = page.json()
        names += [a["name"] for a in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert names == [f"job-{n}" for n in range(7)]
    assert pages == 3


def test_patch_changes_schedule_and_recomputes_deadline(api, anonymous, application):
    anonymous.get(f"/ping/{application['uuid']}")
    response = api.patch(f"/api/v1/applications/{application['uuid']}",
                         json={"period_seconds": 120, "name": "renamed"})
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "renamed" and body["period_seconds"] == 120
    assert body["next_deadline_at"] == "2030-01-01T00:02:00Z"
    assert body["tags"] == ["db", "nightly"]


def test_cron_schedule_with_timezone(api, anonymous):
    created = api.post("/api/v1/applications", json={
        "name": "daily", "cron": "30 2 * * *", "timezone": "Europe/Berlin"}).json()
    assert created["cron"] == "30 2 * * *" and created["period_seconds"] is None
    anonymous.get(f"/ping/{created['uuid']}")  # 2030-01-01 00:00 UTC = 01:00 in Berlin
    state = api.get(f"/api/v1/applications/{created['uuid']}").json()
    assert state["next_deadline_at"] == "2030-01-01T01:30:00Z"


def test_period_and_cron_together_are_refused(api):
    response = api.post("/api/v1/applications",
                        json={"name": "x", "period_seconds": 60, "cron": "* * * * *"})
    assert "cron" in assert_envelope(response, 422, "VALIDATION_ERROR")["details"]


def test_invalid_cron_is_refused(api):
    response = api.post("/api/v1/applications", json={"name": "x", "cron": "every day"})
    assert "cron" in assert_envelope(response, 422, "VALIDATION_ERROR")["details"]


@pytest.mark.parametrize("timezone", ["Europe", "é" * 200, "localtime", "Factory", "posixrules",
                                      "posix/Europe/Berlin", "right/UTC"])
def test_time_zone_that_is_not_a_zone_file_is_refused(api, timezone):
    # A directory of the zone database, or a name too long for a file name, answered 500.
    response = api.post("/api/v1/applications",
                        json={"name": "x", "cron": "0 3 * * *", "timezone": timezone})
    assert "timezone" in assert_envelope(response, 422, "VALIDATION_ERROR")["details"]


def test_cron_that_never_fires_is_refused(api, anonymous, application):
    # February 31st: valid syntax, but every deadline computed from it failed (a 500 on PATCH,
    # and heartbeats that could not be recorded).
    anonymous.get(f"/ping/{application['uuid']}")
    response = api.patch(f"/api/v1/applications/{application['uuid']}",
                         json={"cron": "0 0 31 2 *"})
    assert "cron" in assert_envelope(response, 422, "VALIDATION_ERROR")["details"]


@pytest.mark.parametrize("cron", [
    "0 0 1 1 * 0 2020",  # seconds and a year long past: no future fire
    "0 0 1 1 * 0 2099",  # a year: not a five-field cron
    "*/10 * * * * *",  # seconds
    "@reboot",
])
def test_cron_that_is_not_five_fields_with_a_future_fire_is_refused(api, cron):
    response = api.post("/api/v1/applications", json={"name": "x", "cron": cron})
    assert list(assert_envelope(response, 422, "VALIDATION_ERROR")["details"]) == ["cron"]


def test_cron_macros_are_accepted(api):
    response = api.post("/api/v1/applications", json={"name": "x", "cron": "@daily"})
    assert response.status_code == 201, response.text


def test_a_stored_schedule_without_a_next_fire_never_fails_a_heartbeat(app, api, anonymous,
                                                                       application, clock):
    # Stored before the checks existed (or by hand): every ping answered 500 and was lost.
    from sqlalchemy import update

    from database import db
    from models import Application
    with app.app_context():
        db.session.execute(update(Application).where(Application.uuid == application["uuid"])
                           .values(cron="0 0 1 1 * 0 2020", period_seconds=None))
        db.session.commit()
        db.session.remove()
    uuid = application["uuid"]
    assert anonymous.get(f"/ping/{uuid}").status_code == 200
    assert anonymous.post(f"/ping/{uuid}", data="with a body").status_code == 200
    assert anonymous.post(f"/api/v1/applications/{uuid}/heartbeats",
                          json={"status": "ok"}).status_code == 202
    state = api.get(f"/api/v1/applications/{uuid}").json()
    assert state["status"] == "up"
    assert state["next_deadline_at"] == "2030-01-02T00:00:00Z"  # the default period: a day
    assert len(api.get(f"/api/v1/applications/{uuid}/heartbeats").json()["items"]) == 3


@pytest.mark.parametrize("name", ["payroll\u202egpj.exe", "a\u2066b", "line\nbreak", "tab\there",
                                  "bell\x07", "c1\x85control", "rlm\u200f"])
def test_names_with_control_or_bidirectional_characters_are_refused(api, name):
    response = api.post("/api/v1/applications", json={"name": name, "period_seconds": 60})
    assert list(assert_envelope(response, 422, "VALIDATION_ERROR")["details"]) == ["name"]
    response = api.post("/api/v1/channels", json={"name": name, "kind": "email",
                                                  "addresses": ["ops@example.com"]})
    assert list(assert_envelope(response, 422, "VALIDATION_ERROR")["details"]) == ["name"]


def test_names_are_stored_nfc_normalized(api):
    decomposed = "Cafe\u0301 backup"  # e + combining acute accent
    created = api.post("/api/v1/applications", json={"name": decomposed}).json()
    assert created["name"] == "Caf\u00e9 backup"
    channel = api.post("/api/v1/channels", json={"name": decomposed, "kind": "email",
                                                 "addresses": ["ops@example.com"]}).json()
    assert channel["name"] == "Caf\u00e9 backup"


def test_uuid_cannot_be_changed(api, application):
    response = api.patch(f"/api/v1/applications/{application['uuid']}",
                         json={"uuid": "11111111-1111-4111-8111-111111111111"})
    assert "uuid" in assert_envelope(response, 422, "VALIDATION_ERROR")["details"]
