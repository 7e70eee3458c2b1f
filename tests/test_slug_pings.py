"""§9: `/ping/<ping-key>/<slug>` acts as the UUID URL does; `?create=1`; wrong keys learn
nothing; `manual_resume` and `methods` act on pings; every ping answer says `Ping-Body-Limit`."""
from __future__ import annotations

import uuid as uuid_lib

import pytest

from database import db
from ingest.signals import MAX_PING_MESSAGE_BYTES
from ingest.slug_routes import CHECK_SECONDS
from models import Application
from tests.conftest import Client, make_key
from tests.helpers import assert_envelope


def create_ping_key(app) -> str:
    result = app.test_cli_runner().invoke(args=["ping-key", "create", "crontabs"])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


@pytest.fixture
def ping_key(app) -> str:
    return create_ping_key(app)


@pytest.fixture
def backup(api) -> dict:
    response = api.post("/api/v1/applications", json={"name": "backup", "slug": "backup",
                                                      "period_seconds": 3600})
    assert response.status_code == 201, response.text
    return response.json()


def heartbeats(api, uuid: str) -> list[dict]:
    return list(reversed(api.get(f"/api/v1/applications/{uuid}/heartbeats").json()["items"]))


def hc_key(api) -> dict:
    return {"X-Api-Key": api.session.headers["Authorization"][len("Bearer "):]}


def test_slug_ping_acts_as_the_uuid_url_by_every_method_and_signal(api, anonymous, ping_key,
                                                                  backup, clock):
    base = f"/ping/{ping_key}/backup"
    rid = "8a1d4e2c-0f5b-4e8e-9b53-3f3c1c2b7a10"
    sent = [("GET", base + "/start", {"params": {"rid": rid}}),
            ("POST", base, {"data": "42 files", "params": {"rid": rid}}),
            ("HEAD", base + "/log", {}),
            ("POST", base + "/fail", {"data": "disk full"}),
            ("GET", base + "/0", {}),
            ("POST", base + "/3", {})]
    for method, path, options in sent:
        clock.advance(seconds=10)
        response = anonymous.request(method, path, **options)
        assert response.status_code == 200, response.text
        assert response.text == ("" if method == "HEAD" else "OK")
        assert response.headers["Ping-Body-Limit"] == str(MAX_PING_MESSAGE_BYTES)
    stored = heartbeats(api, backup["uuid"])
    assert [(h["kind"], h["exit_code"], h["message"]) for h in stored] == [
        ("start", None, ""), ("ok", None, "42 files"), ("log", None, ""),
        ("fail", None, "disk full"), ("ok", 0, ""), ("fail", 3, "")]
    assert stored[1]["rid"] == rid and stored[1]["duration_ms"] == 10_000
    assert api.get(f"/api/v1/applications/{backup['uuid']}").json()["status"] == "down"


def test_slug_ping_with_create_makes_a_missing_slug_like_healthchecks(api, anonymous, ping_key,
                                                                     sink):
    channel = api.post("/api/v1/channels", json={"name": "hook", "kind": "webhook",
                                                 "url": sink.url}).json()
    created = anonymous.get(f"/ping/{ping_key}/new-job", params={"create": "1"})
    assert created.status_code == 201 and created.text == "Created"
    assert created.headers["Ping-Body-Limit"] == str(MAX_PING_MESSAGE_BYTES)
    (application,) = api.get("/api/v1/applications").json()["items"]
    assert {key: application[key] for key in ("name", "slug", "period_seconds", "grace_seconds",
                                              "status")} == {
        "name": "new-job", "slug": "new-job", "period_seconds": 86400, "grace_seconds": 3600,
        "status": "up"}
    assert application["channels"] == [channel["id"]]  # every channel, as Healthchecks does
    again = anonymous.post(f"/ping/{ping_key}/new-job/start", params={"create": "1"})
    assert again.status_code == 200 and again.text == "OK"
    assert [h["kind"] for h in heartbeats(api, application["uuid"])] == ["ok", "start"]


def test_a_slug_a_url_cannot_hold_is_refused_on_create(anonymous, ping_key):
    error = assert_envelope(anonymous.get(f"/ping/{ping_key}/Not.A.Slug", params={"create": 1}),
                            422, "VALIDATION_ERROR")
    assert list(error["details"]) == ["slug"]


def test_unknown_slug_and_wrong_key_answer_the_same_404(api, anonymous, ping_key, backup):
    unknown_slug = assert_envelope(anonymous.get(f"/ping/{ping_key}/missing"),
                                   404, "HEARTBEAT_NOT_FOUND")
    wrong_key = assert_envelope(anonymous.get(f"/ping/{ping_key}x/backup"),
                                404, "HEARTBEAT_NOT_FOUND")
    wrong_key_created = assert_envelope(
        anonymous.post(f"/ping/{ping_key}x/other/fail", params={"create": "1"}, data="x"),
        404, "HEARTBEAT_NOT_FOUND")
    for error in (unknown_slug, wrong_key, wrong_key_created):
        assert error["message"] == "No application for this ping key and slug"
        assert error["details"] is None
    assert [a["slug"] for a in api.get("/api/v1/applications").json()["items"]] == ["backup"]
    assert heartbeats(api, backup["uuid"]) == []


def test_a_revoked_key_stops_working_within_a_second(app, anonymous, ping_key, backup, clock):
    assert anonymous.get(f"/ping/{ping_key}/backup").status_code == 200
    result = app.test_cli_runner().invoke(args=["ping-key", "revoke", ping_key])
    assert result.exit_code == 0, result.output
    clock.advance(seconds=CHECK_SECONDS)
    assert_envelope(anonymous.get(f"/ping/{ping_key}/backup"), 404, "HEARTBEAT_NOT_FOUND")
    assert_envelope(anonymous.post(f"/ping/{ping_key}/backup", data="body"),
                    404, "HEARTBEAT_NOT_FOUND")


def test_a_changed_or_removed_slug_reaches_pings_within_a_second(api, anonymous, ping_key,
                                                                 backup, clock):
    assert anonymous.get(f"/ping/{ping_key}/backup").status_code == 200
    other = api.post("/api/v1/applications", json={"name": "other"}).json()
    assert api.patch(f"/api/v1/applications/{backup['uuid']}",
                     json={"slug": "backup-old"}).status_code == 200
    assert api.patch(f"/api/v1/applications/{other['uuid']}",
                     json={"slug": "backup"}).status_code == 200
    clock.advance(seconds=CHECK_SECONDS)
    assert anonymous.get(f"/ping/{ping_key}/backup/fail").status_code == 200
    assert anonymous.get(f"/ping/{ping_key}/backup-old").status_code == 200
    assert [h["kind"] for h in heartbeats(api, other["uuid"])] == ["fail"]
    assert [h["kind"] for h in heartbeats(api, backup["uuid"])] == ["ok", "ok"]
    assert api.delete(f"/api/v1/applications/{backup['uuid']}").status_code == 204
    clock.advance(seconds=CHECK_SECONDS)
    assert_envelope(anonymous.get(f"/ping/{ping_key}/backup-old"), 404, "HEARTBEAT_NOT_FOUND")


def test_two_keys_name_the_same_slugs(app, api, anonymous, ping_key, backup):
    second_key = create_ping_key(app)
    assert anonymous.get(f"/ping/{ping_key}/backup").status_code == 200
    assert anonymous.get(f"/ping/{second_key}/backup/log").status_code == 200
    assert [h["kind"] for h in heartbeats(api, backup["uuid"])] == ["ok", "log"]


@pytest.mark.parametrize("path", ["", "/fail", "/start", "/0"])
def test_a_paused_check_with_manual_resume_ignores_pings(api, anonymous, ping_key, clock, path):
    check = api.session.post(f"{api.base_url}/api/v3/checks/", headers=hc_key(api), json={
        "name": "manual", "slug": "manual", "manual_resume": True}).json()
    uuid = check["ping_url"].rsplit("/", 1)[1]
    assert anonymous.get(f"/ping/{uuid}").status_code == 200  # up, and known to the writer
    last_heartbeat_at = api.get(f"/api/v1/applications/{uuid}").json()["last_heartbeat_at"]
    assert api.post(f"/api/v1/applications/{uuid}/pause").json()["status"] == "paused"
    clock.advance(seconds=60)
    assert anonymous.get(f"/ping/{uuid}{path}").status_code == 200
    assert anonymous.post(f"/ping/{ping_key}/manual{path}", data="by slug").status_code == 200
    application = api.get(f"/api/v1/applications/{uuid}").json()
    assert application["status"] == "paused"
    assert application["last_heartbeat_at"] == last_heartbeat_at
    assert [h["kind"] for h in heartbeats(api, uuid)] == ["ok", "ign", "ign"]
    pings = api.session.get(f"{api.base_url}/api/v3/checks/{uuid}/pings/",
                            headers=hc_key(api)).json()["pings"]
    assert [ping["type"] for ping in pings] == ["ign", "ign", "success"]
    assert api.post(f"/api/v1/applications/{uuid}/resume").status_code == 200
    assert anonymous.get(f"/ping/{uuid}").status_code == 200
    assert api.get(f"/api/v1/applications/{uuid}").json()["status"] == "up"


def test_without_manual_resume_a_ping_resumes_a_paused_check(api, anonymous, ping_key, backup):
    assert api.post(f"/api/v1/applications/{backup['uuid']}/pause").status_code == 200
    assert anonymous.get(f"/ping/{ping_key}/backup").status_code == 200
    assert api.get(f"/api/v1/applications/{backup['uuid']}").json()["status"] == "up"


def test_methods_post_counts_only_post_pings(api, anonymous, ping_key, clock):
    check = api.session.post(f"{api.base_url}/api/v3/checks/", headers=hc_key(api), json={
        "name": "posted", "slug": "posted", "methods": "POST"}).json()
    uuid = check["ping_url"].rsplit("/", 1)[1]
    assert anonymous.get(f"/ping/{uuid}/fail").status_code == 200
    assert anonymous.request("HEAD", f"/ping/{ping_key}/posted/fail").status_code == 200
    assert anonymous.get(f"/ping/{uuid}", params={"rid": uuid}).status_code == 200
    assert api.get(f"/api/v1/applications/{uuid}").json()["status"] == "new"
    assert anonymous.post(f"/ping/{ping_key}/posted").status_code == 200
    assert api.get(f"/api/v1/applications/{uuid}").json()["status"] == "up"
    last_heartbeat_at = api.get(f"/api/v1/applications/{uuid}").json()["last_heartbeat_at"]
    clock.advance(seconds=60)
    assert anonymous.get(f"/ping/{ping_key}/posted").status_code == 200  # known to the writer
    assert api.get(f"/api/v1/applications/{uuid}").json()["last_heartbeat_at"] \
        == last_heartbeat_at
    assert anonymous.post(f"/ping/{uuid}/fail", data="failed").status_code == 200
    assert api.get(f"/api/v1/applications/{uuid}").json()["status"] == "down"
    stored = heartbeats(api, uuid)
    assert [h["kind"] for h in stored] == ["ign", "ign", "ign", "ok", "ign", "fail"]
    with api.session.get(f"{api.base_url}/api/v3/checks/{uuid}/pings/",
                         headers=hc_key(api)) as answer:
        methods = [ping["method"] for ping in reversed(answer.json()["pings"])]
    assert methods == ["GET", "HEAD", "GET", "POST", "GET", "POST"]


def test_uuid_ping_answers_carry_ping_body_limit(anonymous, application):
    for response in (anonymous.get(f"/ping/{application['uuid']}"),  # the fast path
                     anonymous.post(f"/ping/{application['uuid']}/log", data="with a body"),
                     anonymous.get("/ping/9b0e6c2a-37a4-4bb8-8f55-0e3f6f3b1d11")):
        assert response.headers["Ping-Body-Limit"] == "102400"
    assert anonymous.get(f"/ping/{application['uuid']}").text == "OK"


def test_slug_pings_stay_cheap_a_known_route_is_not_looked_up_again(app, anonymous, ping_key,
                                                                    backup, clock):
    routes = app.extensions["hbmon"].slug_routes
    looked_up = []
    original = routes._look_up
    routes._look_up = lambda *args: looked_up.append(args) or original(*args)
    for _ in range(5):
        assert anonymous.get(f"/ping/{ping_key}/backup").status_code == 200
    assert len(looked_up) == 1
    with app.app_context():
        assert db.session.execute(db.select(Application.n_pings)).scalar_one() == 5
        db.session.remove()


def test_slug_pings_are_limited_per_slug_by_both_paths(served_app):
    app, live = served_app(PING_RATE_LIMIT="3/minute")
    api, anonymous = Client(live.url, make_key(app)), Client(live.url)
    for slug in ("limited", "other"):
        assert api.post("/api/v1/applications", json={"name": slug, "slug": slug}
                        ).status_code == 201
    key = create_ping_key(app)
    assert [anonymous.get(f"/ping/{key}/limited").status_code,  # the fast path
            anonymous.post(f"/ping/{key}/limited", data="x").status_code,  # the view
            anonymous.get(f"/ping/{key}/limited/log").status_code] == [200] * 3
    for refused in (anonymous.get(f"/ping/{key}/limited/fail"),
                    anonymous.post(f"/ping/{key}/limited", params={"rid": str(uuid_lib.uuid4())})):
        assert_envelope(refused, 429, "RATE_LIMITED")
        assert refused.headers["Ping-Body-Limit"] == str(MAX_PING_MESSAGE_BYTES)
    assert anonymous.get(f"/ping/{key}/other").status_code == 200
