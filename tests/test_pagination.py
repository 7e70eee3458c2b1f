"""Every paginated list pages through each row once and refuses any cursor it did not give out."""
from __future__ import annotations

import base64
import json

import pytest

from tests.factories import make_error
from tests.helpers import assert_envelope
from utils.pagination import encode_cursor

LISTS = ["applications", "heartbeats", "incidents", "all-incidents", "maintenance-windows",
         "alerts", "errors"]


def unsigned(values) -> str:
    """A cursor in the shape of ours, without a valid signature."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def forged(app, scope: str, values) -> str:
    """A cursor signed with the server's own key, holding what the server would never put in it."""
    with app.test_request_context():
        return encode_cursor(scope, values)


class Lists:
    """Three rows in each of the lists, and the path that lists them."""

    def __init__(self, app, api, anonymous, clock, sink):
        channel = api.post("/api/v1/channels", json={"name": "hook", "kind": "webhook",
                                                     "url": sink.url}).json()
        created = [api.post("/api/v1/applications", json={
            "name": f"job-{n}", "period_seconds": 60, "channels": [channel["id"]]}).json()
            for n in range(3)]
        self.uuid = created[0]["uuid"]
        for kind in ("fail", "", "fail", "", "fail"):  # three incidents, five alerts
            clock.advance(seconds=1)
            assert anonymous.get(f"/ping/{self.uuid}/{kind}".rstrip("/")).status_code == 200
        for n in range(3):
            make_error(app, clock.advance(seconds=1), message=f"error {n}")
            assert api.post("/api/v1/maintenance-windows", json={
                "name": f"window-{n}", "starts_at": "2030-02-01T00:00:00Z",
                "ends_at": "2030-02-02T00:00:00Z"}).status_code == 201
        self.paths = {"applications": "/api/v1/applications",
                      "heartbeats": f"/api/v1/applications/{self.uuid}/heartbeats",
                      "incidents": f"/api/v1/applications/{self.uuid}/incidents",
                      "all-incidents": "/api/v1/incidents",
                      "maintenance-windows": "/api/v1/maintenance-windows",
                      "alerts": "/api/v1/alerts", "errors": "/api/v1/errors"}

    def page(self, api, name: str, cursor: str | None = None, limit: int = 1):
        query = {"limit": limit, **({"cursor": cursor} if cursor is not None else {})}
        return api.get(self.paths[name], params=query)


@pytest.fixture
def lists(app, api, anonymous, clock, sink) -> Lists:
    return Lists(app, api, anonymous, clock, sink)


def ids_of(items) -> list:
    return [item.get("id", item.get("uuid")) for item in items]


@pytest.mark.parametrize("name", LISTS)
def test_a_list_pages_through_every_row_once_with_its_own_cursors(api, lists, name):
    everything = ids_of(lists.page(api, name, limit=200).json()["items"])
    assert len(everything) >= 3
    seen, cursor = [], None
    while True:
        page = lists.page(api, name, cursor)
        assert page.status_code == 200, page.text
        seen += ids_of(page.json()["items"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == everything


def foreign_cursors(app, lists: Lists, api, name: str) -> dict[str, str]:
    own = lists.page(api, name).json()["next_cursor"]
    other = "alerts" if name != "alerts" else "errors"
    from_another_list = lists.page(api, other).json()["next_cursor"]
    body, _, signature = own.partition(".")
    return {
        "garbage": "%%%", "a word": "bogus", "a dot alone": ".", "empty signature": f"{body}.",
        "no signature": body, "truncated": own[:-3],
        "body changed": f"{unsigned([12345])}.{signature}",
        "from another list": from_another_list,
        "unsigned id": unsigned([1]), "unsigned huge number": unsigned([2**70]),
        "unsigned string id": unsigned(["1"]), "unsigned null": unsigned([None]),
        "unsigned object": unsigned({"id": 1}), "unsigned float": unsigned([1.5]),
        "long": "A" * 190 + "." + signature, "very long": "A" * 5000,
        "signed huge number": forged(app, name, [2**70] * (2 if name == "heartbeats" else 1)),
        "signed negative": forged(app, name, [-1] * (2 if name == "heartbeats" else 1)),
        "signed string": forged(app, name, ["x"] * (2 if name == "heartbeats" else 1)),
        "signed boolean": forged(app, name, [True] * (2 if name == "heartbeats" else 1)),
        "signed wrong arity": forged(app, name, [1, 2, 3]),
        "signed naive time": forged(app, name, ["2030-01-01T00:00:00", 1]),
        "signed not a time": forged(app, name, ["yesterday", 1]),
    }


@pytest.mark.parametrize("name", LISTS)
def test_a_list_refuses_every_cursor_it_did_not_make_with_malformed_request(
        app, api, lists, name):
    for label, cursor in foreign_cursors(app, lists, api, name).items():
        response = lists.page(api, name, cursor)
        error = assert_envelope(response, 400, "MALFORMED_REQUEST")
        assert "cursor" in error["details"], label


def test_a_cursor_signed_with_another_key_is_refused(app, api, lists):
    own = lists.page(api, "applications").json()["next_cursor"]
    original = app.secret_key
    app.secret_key = "another installation's key"
    try:
        refused = lists.page(api, "applications", own)
    finally:
        app.secret_key = original
    assert_envelope(refused, 400, "MALFORMED_REQUEST")
    assert lists.page(api, "applications", own).status_code == 200
