"""§10: status badges behind an unguessable badge key, for one application or a tag."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

import pytest

from tests.conftest import Client, make_key
from tests.helpers import assert_envelope


@pytest.fixture
def hc(app, server) -> Client:
    client = Client(server.url)
    client.session.headers["X-Api-Key"] = make_key(app, "badges")
    return client


def new_check(hc: Client, **fields) -> dict:
    response = hc.post("/api/v3/checks/", json={"timeout": 3600, "grace": 600, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def path_of(url: str, base: str) -> str:
    assert url.startswith(base)
    return url[len(base):]


def svg_texts(response) -> list[str]:
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("image/svg+xml")
    root = ElementTree.fromstring(response.text)
    return [element.text for element in root.iter("{http://www.w3.org/2000/svg}text")]


def test_application_badge_is_up_late_down_in_svg_and_shields_json(hc, anonymous, clock):
    check = new_check(hc, name="Nightly <backup>", slug="nightly")
    badge = path_of(check["badge_url"], hc.base_url)
    assert badge.endswith("/nightly.svg") and check["uuid"] not in badge
    anonymous.get(f"/ping/{check['uuid']}")
    states = []
    for advance in (0, 3601, 600):
        clock.advance(seconds=advance)
        texts = svg_texts(anonymous.get(badge))
        assert texts[1] == "Nightly <backup>"  # escaped in the SVG, read back whole
        shields = anonymous.get(badge.replace(".svg", ".json")).json()
        assert shields["schemaVersion"] == 1 and shields["label"] == "Nightly <backup>"
        assert shields["message"] == texts[-1]
        states.append((texts[-1], shields["color"]))
    assert states == [("up", "success"), ("late", "important"), ("down", "critical")]
    response = anonymous.get(badge)
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_application_badge_by_uuid_slug_or_unique_key(hc, anonymous):
    check = new_check(hc, name="no slug")
    badge = path_of(check["badge_url"], hc.base_url)
    key, name = re.fullmatch(r"/badge/([^/]+)/([0-9a-f]{40})\.svg", badge).groups()
    assert svg_texts(anonymous.get(f"/badge/{key}/{check['uuid']}.svg"))[-1] == "up"
    assert anonymous.get(f"/badge/{key}/{name}.shields").json()["label"] == "no slug"
    hc.post(f"/api/v3/checks/{check['uuid']}", json={"slug": "named"})
    assert anonymous.get(f"/badge/{key}/named.json").json()["message"] == "up"


def test_a_wrong_key_or_name_reveals_nothing(hc, anonymous):
    check = new_check(hc, slug="secret-job")
    badge = path_of(check["badge_url"], hc.base_url)
    key = badge.split("/")[2]
    wrong_key = badge.replace(key, "x" * len(key))
    missing = badge.replace("secret-job", "no-such-job")
    answers = [assert_envelope(anonymous.get(path), 404, "NOT_FOUND")
               for path in (wrong_key, missing, f"/badge/{key}/abcdefgh/secret-job.svg")]
    assert len({(error["message"], error["details"]) for error in answers}) == 1
    assert anonymous.get(badge.replace(".svg", ".png")).status_code == 404


def test_tag_badges_count_two_or_three_states(hc, anonymous, clock):
    late = new_check(hc, tags="prod db", timeout=60, grace=3600)
    new_check(hc, tags="prod")
    anonymous.get(f"/ping/{late['uuid']}")
    clock.advance(seconds=61)
    urls = hc.get("/api/v3/badges/").json()["badges"]["prod"]
    base = hc.base_url
    assert svg_texts(anonymous.get(path_of(urls["svg3"], base)))[-1] == "late"
    assert svg_texts(anonymous.get(path_of(urls["svg"], base)))[-1] == "up"
    assert anonymous.get(path_of(urls["json3"], base)).json() == {
        "status": "late", "total": 2, "grace": 1, "down": 0}
    assert anonymous.get(path_of(urls["shields"], base)).json() == {
        "schemaVersion": 1, "label": "prod", "message": "up", "color": "success"}
    anonymous.get(f"/ping/{late['uuid']}/fail")
    everything = hc.get("/api/v3/badges/").json()["badges"]["*"]
    assert anonymous.get(path_of(everything["json"], base)).json() == {
        "status": "down", "total": 2, "grace": 0, "down": 1}
    # A signature is the tag's own: it does not open another tag's badge.
    db_urls = hc.get("/api/v3/badges/").json()["badges"]["db"]
    signature = path_of(urls["svg3"], base).split("/")[3]
    forged = path_of(db_urls["svg3"], base).replace(path_of(db_urls["svg3"], base).split("/")[3],
                                                     signature)
    assert_envelope(anonymous.get(forged), 404, "NOT_FOUND")


def test_tags_with_dots_and_slashes_have_working_badges(hc, anonymous):
    new_check(hc, tags="v1.2 team/ops")
    badges = hc.get("/api/v3/badges/").json()["badges"]
    for tag in ("v1.2", "team/ops"):
        shields = anonymous.get(path_of(badges[tag]["shields3"], hc.base_url)).json()
        assert shields["label"] == tag and shields["message"] == "up"


def test_the_badge_key_is_one_per_installation_and_unguessable(hc):
    first = new_check(hc, slug="one")["badge_url"].split("/")[4]
    second = new_check(hc, slug="two")["badge_url"].split("/")[4]
    assert first == second and len(first) >= 24
