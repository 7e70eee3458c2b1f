"""§9: Healthchecks' management API, from the requests and answers of its documentation."""
from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from tests.conftest import Client, make_key
from tests.factories import make_channel
from tests.helpers import assert_envelope

NoneType = type(None)
# Check.to_dict: every key with its type, in Healthchecks' order.
CHECK_KEYS = {
    "name": str, "slug": str, "tags": str, "desc": str, "grace": int, "n_pings": int,
    "status": str, "started": bool, "last_ping": (str, NoneType), "next_ping": (str, NoneType),
    "manual_resume": bool, "methods": str, "subject": str, "subject_fail": str,
    "start_kw": str, "success_kw": str, "failure_kw": str, "filter_subject": bool,
    "filter_body": bool, "filter_http_body": bool, "filter_default_fail": bool,
    "badge_url": str}
READ_WRITE_KEYS = {"uuid": str, "ping_url": str, "update_url": str, "pause_url": str,
                   "resume_url": str, "channels": str}
READ_ONLY_KEYS = {"unique_key": str}
SIMPLE_KEYS, CRON_KEYS = {"timeout": int}, {"schedule": str, "tz": str}
HC_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")  # whole seconds, +00:00


def assert_check_shape(check: dict, *, read_only: bool = False, cron: bool = False,
                       last_duration: bool = False) -> None:
    expected = {**CHECK_KEYS, **({"last_duration": int} if last_duration else {}),
                **(READ_ONLY_KEYS if read_only else READ_WRITE_KEYS),
                **(CRON_KEYS if cron else SIMPLE_KEYS)}
    assert list(check) == list(expected), "keys and their order as Healthchecks gives them"
    for key, kind in expected.items():
        assert isinstance(check[key], kind) and not (kind is int and check[key] is True), key
    for key in ("last_ping", "next_ping"):
        assert check[key] is None or HC_TIME.match(check[key]), check[key]


@pytest.fixture
def key(app) -> str:
    return make_key(app, "healthchecks client")


@pytest.fixture
def hc(server, key) -> Client:
    """A Healthchecks API client: the key in X-Api-Key, as its documentation shows."""
    client = Client(server.url)
    client.session.headers["X-Api-Key"] = key
    return client


@pytest.fixture
def reader(app, server) -> Client:
    client = Client(server.url)
    client.session.headers["X-Api-Key"] = make_key(app, "board", read_only=True)
    return client


def create(hc: Client, body: dict, version: int = 3) -> dict:
    response = hc.post(f"/api/v{version}/checks/", data=json.dumps(body))
    assert response.status_code == 201, response.text
    return response.json()


def test_documented_create_request_answers_the_documented_check(hc, server):
    # curl SITE_ROOT/api/v3/checks/ --header "X-Api-Key: ..." --data '{...}': no JSON type.
    response = hc.post("/api/v3/checks/", data='{"name": "Backups", "tags": "prod www", '
                                               '"timeout": 3600, "grace": 60}')
    assert response.status_code == 201
    check = response.json()
    assert_check_shape(check)
    uuid = check["uuid"]
    assert {key: check[key] for key in ("name", "slug", "tags", "desc", "grace", "n_pings",
                                        "status", "started", "last_ping", "next_ping",
                                        "manual_resume", "methods", "channels", "timeout")} == {
        "name": "Backups", "slug": "", "tags": "prod www", "desc": "", "grace": 60,
        "n_pings": 0, "status": "new", "started": False, "last_ping": None,
        "next_ping": None, "manual_resume": False, "methods": "", "channels": "",
        "timeout": 3600}
    assert check["ping_url"] == f"{server.url}/ping/{uuid}"
    assert check["update_url"] == f"{server.url}/api/v3/checks/{uuid}"
    assert check["pause_url"] == f"{server.url}/api/v3/checks/{uuid}/pause"
    assert check["resume_url"] == f"{server.url}/api/v3/checks/{uuid}/resume"
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_api_key_in_the_json_body_is_accepted(server, key):
    anonymous = Client(server.url)
    response = anonymous.post("/api/v3/checks/", data=json.dumps({"api_key": key, "name": "x"}))
    assert response.status_code == 201
    assert "api_key" not in response.text


def test_an_empty_body_creates_a_check_with_healthchecks_defaults(hc):
    check = create(hc, {})
    assert (check["name"], check["timeout"], check["grace"]) == ("", 86400, 3600)
    assert hc.post("/api/v3/checks/").status_code == 201  # no body at all


def test_cron_schedule_and_timezone(hc):
    check = create(hc, {"schedule": "5 * * * *", "tz": "Europe/Riga", "grace": 60,
                        "timeout": 300})  # the schedule wins over the timeout
    assert_check_shape(check, cron=True)
    assert (check["schedule"], check["tz"], check["grace"]) == ("5 * * * *", "Europe/Riga", 60)
    changed = hc.post(f"/api/v3/checks/{check['uuid']}", data='{"timeout": 600}').json()
    assert_check_shape(changed)
    assert changed["timeout"] == 600


@pytest.mark.parametrize(("body", "field"), [
    ({"timeout": 59}, "timeout"), ({"timeout": 31536001}, "timeout"),
    ({"grace": 59}, "grace"), ({"timeout": "3600"}, "timeout"), ({"timeout": 60.5}, "timeout"),
    ({"name": "x" * 101}, "name"), ({"name": False}, "name"), ({"name": None}, "name"),
    ({"slug": "Uppercase"}, "slug"), ({"slug": "look spaces"}, "slug"),
    ({"schedule": "bad-expression"}, "schedule"), ({"schedule": "* * * * * *"}, "schedule"),
    ({"schedule": "12:34"}, "schedule"), ({"tz": "not-a-timezone"}, "tz"),
    ({"manual_resume": "surprise"}, "manual_resume"), ({"manual_resume": 1}, "manual_resume"),
    ({"methods": "bad-value"}, "methods"), ({"channels": 123}, "channels"),
    ({"unique": ["status"]}, "unique.0"), ({"unique": "not a list"}, "unique"),
    ({"filter_http_body": True}, "filter_http_body"), ({"success_kw": "OK"}, "success_kw"),
])
def test_invalid_fields_are_refused_field_by_field(hc, body, field):
    error = assert_envelope(hc.post("/api/v3/checks/", data=json.dumps(body)), 422,
                            "VALIDATION_ERROR")
    assert list(error["details"]) == [field]
    assert hc.get("/api/v3/checks/").json() == {"checks": []}


def test_unparseable_bodies_keep_our_envelope(hc):
    assert_envelope(hc.post("/api/v3/checks/", data="this is not json"), 400,
                    "MALFORMED_REQUEST")
    assert_envelope(hc.post("/api/v3/checks/", data="[1,2,3]"), 400, "MALFORMED_REQUEST")


def test_keyword_fields_with_their_defaults_are_accepted(hc):
    check = create(hc, {"name": "x", "start_kw": "", "filter_subject": False, "subject": ""})
    assert check["start_kw"] == "" and check["filter_subject"] is False


@pytest.mark.parametrize("field", ["name", "slug", "tags", "timeout", "grace"])
def test_unique_upsert_updates_the_match_with_200(hc, field):
    values = {"name": "Backups", "slug": "backups", "tags": "prod db", "timeout": 123,
              "grace": 456}
    first = create(hc, {**values, "desc": "old"})
    spec = {field: values[field] if field != "tags" else "db prod", "desc": "new",
            "unique": [field]}
    again = hc.post("/api/v3/checks/", data=json.dumps(spec))
    assert again.status_code == 200
    assert again.json()["uuid"] == first["uuid"] and again.json()["desc"] == "new"
    assert len(hc.get("/api/v3/checks/").json()["checks"]) == 1


def test_unique_without_a_match_or_naming_an_absent_field_creates(hc):
    create(hc, {"name": "Backups"})
    assert hc.post("/api/v3/checks/", data='{"name": "Other", "unique": ["name"]}'
                   ).status_code == 201
    assert hc.post("/api/v3/checks/", data='{"name": "Backups", "unique": ["slug"]}'
                   ).status_code == 201
    assert hc.post("/api/v3/checks/", data='{"name": "Backups", "unique": []}'
                   ).status_code == 201
    assert len(hc.get("/api/v3/checks/").json()["checks"]) == 4


def test_channels_string_forms(app, hc):
    make_channel(app, "Email to Alice", is_operator=False)
    make_channel(app, "Ops hook", is_operator=False)
    integrations = hc.get("/api/v3/channels/").json()["channels"]
    assert [(c["name"], c["kind"]) for c in integrations] == [("Email to Alice", "webhook"),
                                                              ("Ops hook", "webhook")]
    assert all(re.fullmatch(r"[0-9a-f-]{36}", c["id"]) for c in integrations)
    ids = {c["name"]: c["id"] for c in integrations}
    uuid = create(hc, {"channels": "*"})["uuid"]
    url = f"/api/v3/checks/{uuid}"
    assert hc.get(url).json()["channels"] == ",".join(sorted(ids.values()))

    def assigned(channels: str) -> str:
        response = hc.post(url, data=json.dumps({"channels": channels}))
        assert response.status_code == 200, response.text
        return response.json()["channels"]

    assert assigned("") == ""
    assert assigned(ids["Ops hook"]) == ids["Ops hook"]
    assert assigned("Email to Alice,Ops hook") == ",".join(sorted(ids.values()))
    assert assigned(f"{ids['Ops hook']},Ops hook") == ids["Ops hook"]  # the same, once
    assert hc.post(url, data="{}").json()["channels"] == ids["Ops hook"]  # absent: unchanged
    for channels, message in (("abc", "invalid channel identifier: abc"),
                              (",", "empty channel identifier")):
        error = assert_envelope(hc.post(url, data=json.dumps({"channels": channels})), 422,
                                "VALIDATION_ERROR")
        assert error["details"] == {"channels": [message]}
    make_channel(app, "Ops hook", is_operator=False)
    error = assert_envelope(hc.post(url, data='{"channels": "Ops hook"}'), 422,
                            "VALIDATION_ERROR")
    assert error["details"] == {"channels": ["non-unique channel identifier: Ops hook"]}
    assert hc.get(url).json()["channels"] == ids["Ops hook"]
    # Our own /api/v1/channels keeps its meaning.
    assert "items" in hc.get("/api/v1/channels").json()


def test_list_filters_by_every_tag_given_and_by_slug(hc):
    create(hc, {"name": "Alice 1", "slug": "alice-1", "tags": "a1-tag a1-additional-tag"})
    create(hc, {"name": "Alice 2", "tags": "a2-tag"})

    def names(query: str) -> list[str]:
        response = hc.get(f"/api/v3/checks/{query}")
        assert response.status_code == 200
        return [check["name"] for check in response.json()["checks"]]

    assert names("") == ["Alice 1", "Alice 2"]
    assert names("?tag=a2-tag") == ["Alice 2"]
    assert names("?tag=a1-tag&tag=a1-additional-tag") == ["Alice 1"]
    assert names("?tag=a1-tag&tag=a2-tag") == []
    assert names("?tag=tag") == []  # no partial match
    assert names("?slug=alice-1") == ["Alice 1"]
    assert names("?slug=nobody") == []


def test_read_only_key_gets_the_read_only_shape_and_may_only_read(hc, reader, anonymous):
    uuid = create(hc, {"name": "Database Backup", "tags": "production db", "timeout": 3600})[
        "uuid"]
    listed = reader.get("/api/v3/checks/")
    assert listed.status_code == 200 and uuid not in listed.text
    (check,) = listed.json()["checks"]
    assert_check_shape(check, read_only=True)
    unique_key = check["unique_key"]
    assert re.fullmatch(r"[0-9a-f]{40}", unique_key)
    by_key = reader.get(f"/api/v3/checks/{unique_key}")
    assert by_key.status_code == 200 and by_key.json() == check and uuid not in by_key.text
    assert reader.get(f"/api/v3/checks/{uuid}").json()["unique_key"] == unique_key
    assert reader.get(f"/api/v3/checks/{unique_key}/flips/").json() == {"flips": []}
    assert reader.get("/api/v3/badges/").status_code == 200
    for method, path in (("post", "/api/v3/checks/"), ("post", f"/api/v3/checks/{uuid}"),
                         ("post", f"/api/v3/checks/{uuid}/pause"),
                         ("delete", f"/api/v3/checks/{uuid}"),
                         ("get", f"/api/v3/checks/{uuid}/pings/"),
                         ("get", "/api/v3/channels/")):
        assert_envelope(reader.request(method, path, data="{}"), 403, "FORBIDDEN")
    assert_envelope(anonymous.get("/api/v3/checks/"), 401, "UNAUTHORIZED")
    bad = Client(anonymous.base_url)
    bad.session.headers["X-Api-Key"] = "hbm_00000000_wrong"
    assert_envelope(bad.get("/api/v3/checks/"), 401, "UNAUTHORIZED")
    assert hc.get(f"/api/v3/checks/{unique_key}").json()["uuid"] == uuid


def test_status_follows_the_clock_and_late_is_grace(hc, anonymous, clock):
    uuid = create(hc, {"timeout": 3600, "grace": 600})["uuid"]
    url = f"/api/v3/checks/{uuid}"
    assert anonymous.get(f"/ping/{uuid}").status_code == 200
    check = hc.get(url).json()
    assert check["status"] == "up"
    assert check["last_ping"] == "2030-01-01T00:00:00+00:00"
    assert check["next_ping"] == "2030-01-01T01:00:00+00:00"
    clock.advance(seconds=3601)
    assert hc.get(url).json()["status"] == "grace"
    clock.advance(seconds=600)
    assert hc.get(url).json()["status"] == "down"
    assert hc.get(url).json()["next_ping"] == "2030-01-01T01:00:00+00:00"


def test_a_run_is_started_and_v1_says_so_in_status(hc, anonymous, clock):
    uuid = create(hc, {"timeout": 3600})["uuid"]
    anonymous.get(f"/ping/{uuid}/start")
    v3, v1 = hc.get(f"/api/v3/checks/{uuid}").json(), hc.get(f"/api/v1/checks/{uuid}").json()
    assert (v3["status"], v3["started"]) == ("new", True)
    assert (v1["status"], v1["started"]) == ("started", True)
    assert v3["next_ping"] == "2030-01-01T00:00:00+00:00"  # grace runs from the start
    clock.advance(seconds=42)
    anonymous.get(f"/ping/{uuid}")
    check = hc.get(f"/api/v3/checks/{uuid}").json()
    assert_check_shape(check, last_duration=True)
    assert (check["started"], check["last_duration"]) == (False, 42)


def test_pause_resume_and_delete(hc, anonymous):
    uuid = create(hc, {"name": "Backups"})["uuid"]
    anonymous.get(f"/ping/{uuid}")
    paused = hc.post(f"/api/v3/checks/{uuid}/pause", data="")  # curl --data ""
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert hc.post(f"/api/v3/checks/{uuid}/pause", json={}).json()["status"] == "paused"
    resumed = hc.post(f"/api/v3/checks/{uuid}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "new"
    assert_envelope(hc.post(f"/api/v3/checks/{uuid}/resume"), 409, "CONFLICT")
    deleted = hc.delete(f"/api/v3/checks/{uuid}")
    assert deleted.status_code == 200
    assert_check_shape(deleted.json())
    assert deleted.json()["name"] == "Backups"
    assert_envelope(hc.get(f"/api/v3/checks/{uuid}"), 404, "APPLICATION_NOT_FOUND")
    assert_envelope(anonymous.get(f"/ping/{uuid}"), 404, "HEARTBEAT_NOT_FOUND")


@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_unknown_and_malformed_check_ids(hc, method):
    assert_envelope(hc.request(method, "/api/v3/checks/2f7aed14-7f8e-4bca-a4ab-0bfc1cb1c0f5"),
                    404, "APPLICATION_NOT_FOUND")
    assert_envelope(hc.request(method, "/api/v3/checks/not-a-uuid"), 400, "MALFORMED_REQUEST")


def test_pings_are_numbered_newest_first_with_their_bodies(hc, anonymous, clock):
    uuid = create(hc, {"timeout": 3600})["uuid"]
    anonymous.get(f"/ping/{uuid}/start?rid=123e4567-e89b-12d3-a456-426614174000",
                  headers={"User-Agent": "curl/7.68.0"})
    clock.advance(seconds=2.5)
    anonymous.post(f"/ping/{uuid}?rid=123e4567-e89b-12d3-a456-426614174000", data="42 rows")
    anonymous.post(f"/ping/{uuid}/log", data="")
    anonymous.get(f"/ping/{uuid}/fail")
    pings = hc.get(f"/api/v3/checks/{uuid}/pings/").json()["pings"]
    assert [(p["n"], p["type"]) for p in pings] == [(4, "fail"), (3, "log"), (2, "success"),
                                                   (1, "start")]
    success = pings[2]
    assert list(success) == ["type", "date", "n", "scheme", "remote_addr", "method", "ua",
                             "rid", "body_url", "duration"]
    assert success["duration"] == 2.5 and success["rid"] == "123e4567-e89b-12d3-a456-426614174000"
    assert success["date"] == "2030-01-01T00:00:02.500000+00:00"
    assert success["remote_addr"] == "127.0.0.1" and pings[3]["ua"] == "curl/7.68.0"
    assert success["body_url"] == f"{hc.base_url}/api/v3/checks/{uuid}/pings/2/body"
    assert [p["body_url"] for p in pings if p["n"] != 2] == [None, None, None]
    assert "duration" not in pings[3]
    body = hc.get(f"/api/v3/checks/{uuid}/pings/2/body")
    assert body.status_code == 200 and body.text == "42 rows"
    assert body.headers["Content-Type"].startswith("text/plain")
    for n in (1, 5, 0):
        assert_envelope(hc.get(f"/api/v3/checks/{uuid}/pings/{n}/body"), 404, "NOT_FOUND")
    assert hc.get(f"/api/v3/checks/{uuid}").json()["n_pings"] == 4


def test_n_pings_counts_every_stored_heartbeat_on_every_write_path(hc, anonymous):
    uuid = create(hc, {"timeout": 3600})["uuid"]
    for _ in range(5):  # plain pings take PostgreSQL's one-statement path after the first
        assert anonymous.get(f"/ping/{uuid}").status_code == 200
    anonymous.post(f"/ping/{uuid}/log", data="note")
    anonymous.post(f"/api/v1/applications/{uuid}/heartbeats", json={"status": "fail"})
    anonymous.get(f"/ping/{uuid}/0")  # recovers: an incident resolves on the ORM path
    check = hc.get(f"/api/v3/checks/{uuid}").json()
    assert check["n_pings"] == 8
    assert [p["n"] for p in hc.get(f"/api/v3/checks/{uuid}/pings/").json()["pings"]] == \
        list(range(8, 0, -1))


def test_flips_are_incident_boundaries_with_time_filters(hc, anonymous, clock):
    uuid = create(hc, {"timeout": 3600})["uuid"]
    anonymous.get(f"/ping/{uuid}")
    clock.advance(seconds=60.123)
    anonymous.get(f"/ping/{uuid}/fail")  # 2030-01-01T00:01:00: down
    clock.advance(seconds=60)
    anonymous.get(f"/ping/{uuid}")  # 00:02:00: up
    url = f"/api/v3/checks/{uuid}/flips/"
    assert hc.get(url).json() == {"flips": [
        {"timestamp": "2030-01-01T00:02:00+00:00", "up": 1},
        {"timestamp": "2030-01-01T00:01:00+00:00", "up": 0}]}
    start = int(dt.datetime(2030, 1, 1, 0, 1, 30, tzinfo=dt.timezone.utc).timestamp())
    assert [f["up"] for f in hc.get(f"{url}?start={start}").json()["flips"]] == [1]
    assert [f["up"] for f in hc.get(f"{url}?end={start}").json()["flips"]] == [0]
    assert [f["up"] for f in hc.get(f"{url}?seconds=30").json()["flips"]] == [1]
    assert [f["up"] for f in hc.get(f"{url}?seconds=3600").json()["flips"]] == [1, 0]
    assert [f["up"] for f in hc.get(f"{url}?seconds=0").json()["flips"]] == [1, 0]
    for query in ("?start=abc", "?start=-123", "?start=12345678901234567890",
                  "?seconds=-123", "?seconds=12345678901234567890", "?seconds=0&other=1"):
        assert_envelope(hc.get(url + query), 422, "VALIDATION_ERROR")


def test_badges_list_every_tag_and_all(hc, reader):
    create(hc, {"tags": "backup db"})
    badges = reader.get("/api/v3/badges/").json()["badges"]
    assert sorted(badges) == ["*", "backup", "db"]
    for urls in badges.values():
        assert list(urls) == ["svg", "svg3", "json", "json3", "shields", "shields3"]
        for fmt, url in urls.items():
            assert url.startswith(f"{hc.base_url}/badge/") and url.endswith(
                "." + fmt.rstrip("3"))
            assert hc.session.get(url).status_code == 200


def test_status_needs_no_key(anonymous):
    response = anonymous.get("/api/v3/status/")
    assert response.status_code == 200 and response.text == "OK"


def test_browsers_preflight_without_a_key(anonymous):
    response = anonymous.request("OPTIONS", "/api/v3/checks/")
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "X-Api-Key" in response.headers["Access-Control-Allow-Headers"]
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_v1_and_v2_derive_the_slug_from_the_name_and_v3_does_not(hc):
    assert create(hc, {"name": "Foo Bar!"}, version=3)["slug"] == ""
    derived = create(hc, {"name": "Foo Bar!"}, version=2)
    assert derived["slug"] == "foo-bar"
    assert derived["update_url"].endswith(f"/api/v2/checks/{derived['uuid']}")
    # Slugs are unique here: a second "Foo Bar" keeps no slug rather than failing.
    assert create(hc, {"name": "Foo bar"}, version=1)["slug"] == ""
    renamed = hc.post(f"/api/v1/checks/{derived['uuid']}", data='{"name": "Nightly"}').json()
    assert renamed["slug"] == "nightly"
    assert_envelope(hc.post("/api/v3/checks/", data='{"slug": "nightly"}'), 409, "CONFLICT")


def test_v1_and_v2_are_served_by_the_views_of_v3(app):
    views: dict[tuple[str, frozenset], set] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("healthchecks"):
            path = re.sub(r"^/api/v[123]/", "/", rule.rule)
            views.setdefault((path, frozenset(rule.methods)), set()).add(
                app.view_functions[rule.endpoint])
    assert len(views) == 13
    assert all(len(functions) == 1 for functions in views.values())


def test_the_v1_paths_beside_ours(hc):
    assert hc.get("/api/v1/checks/").status_code == 200
    assert hc.get("/api/v1/badges/").status_code == 200
    assert hc.get("/api/v1/status/").text == "OK"
    assert hc.get("/api/v2/channels/").json() == {"channels": []}
