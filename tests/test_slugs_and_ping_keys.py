"""§9: slugs on applications (both APIs) and `flask ping-key create|list|revoke`."""
from __future__ import annotations

import pytest

from database import db
from models import PingKey
from ping_keys import active_ping_key_id
from tests.helpers import assert_envelope


def test_slug_is_optional_unique_and_editable_through_our_api(api):
    created = api.post("/api/v1/applications", json={"name": "backup", "slug": "nightly_db-1"})
    assert created.status_code == 201 and created.json()["slug"] == "nightly_db-1"
    uuid = created.json()["uuid"]
    assert api.post("/api/v1/applications", json={"name": "plain"}).json()["slug"] is None
    assert_envelope(api.post("/api/v1/applications", json={"name": "x", "slug": "nightly_db-1"}),
                    409, "CONFLICT")
    for bad in ("Nightly", "with space", "", "a" * 101, "dots.no"):
        error = assert_envelope(api.post("/api/v1/applications", json={"name": "x", "slug": bad}),
                                422, "VALIDATION_ERROR")
        assert list(error["details"]) == ["slug"]
    renamed = api.patch(f"/api/v1/applications/{uuid}", json={"slug": "renamed"})
    assert renamed.json()["slug"] == "renamed"
    assert api.patch(f"/api/v1/applications/{uuid}", json={"slug": None}).json()["slug"] is None
    assert api.post("/api/v1/applications", json={"name": "y", "slug": "renamed"}
                    ).status_code == 201  # free again


def test_one_application_two_views(api):
    """Create here, read there; change there, read here."""
    created = api.post("/api/v1/applications", json={
        "name": "invoices", "slug": "invoices", "description": "monthly", "tags": ["billing", "prod"],
        "cron": "0 3 1 * *", "timezone": "Europe/Berlin", "grace_seconds": 900}).json()
    uuid = created["uuid"]
    headers = {"X-Api-Key": api.session.headers["Authorization"][7:]}
    check = api.session.get(f"{api.base_url}/api/v3/checks/{uuid}", headers=headers).json()
    assert {key: check[key] for key in ("uuid", "name", "slug", "desc", "tags", "schedule", "tz",
                                        "grace", "status")} == {
        "uuid": uuid, "name": "invoices", "slug": "invoices", "desc": "monthly",
        "tags": "billing prod", "schedule": "0 3 1 * *", "tz": "Europe/Berlin", "grace": 900,
        "status": "new"}
    changed = api.session.post(f"{api.base_url}/api/v3/checks/{uuid}", headers=headers, json={
        "name": "invoices-eu", "tags": "billing", "timeout": 7200, "grace": 600,
        "desc": "daily"})
    assert changed.status_code == 200, changed.text
    here = api.get(f"/api/v1/applications/{uuid}").json()
    assert {key: here[key] for key in ("name", "slug", "description", "tags", "period_seconds",
                                       "cron", "grace_seconds")} == {
        "name": "invoices-eu", "slug": "invoices", "description": "daily", "tags": ["billing"],
        "period_seconds": 7200, "cron": None, "grace_seconds": 600}


def ping_key_cli(app, *args: str):
    result = app.test_cli_runner().invoke(args=["ping-key", *args])
    return result


def test_ping_key_create_prints_the_key_alone_on_its_last_line_stored_hashed(app):
    result = ping_key_cli(app, "create", "crontabs")
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert key.startswith("hbp_") and len(key) > 40 and " " not in key
    with app.app_context():
        (row,) = db.session.query(PingKey).all()
        assert row.name == "crontabs" and key not in (row.key_hash, row.prefix)
        assert active_ping_key_id(key) == row.id
        assert active_ping_key_id(key + "x") is None
        db.session.remove()


def test_ping_key_list_and_revoke(app):
    key = ping_key_cli(app, "create", "crontabs").output.strip().splitlines()[-1]
    prefix = key.split("_")[1]
    listed = ping_key_cli(app, "list").output
    assert f"hbp_{prefix}_…" in listed and "active" in listed and key not in listed
    assert ping_key_cli(app, "revoke", prefix).exit_code == 0
    assert "revoked" in ping_key_cli(app, "list").output
    with app.app_context():
        assert active_ping_key_id(key) is None
        db.session.remove()
    again = ping_key_cli(app, "revoke", prefix)
    assert again.exit_code == 1 and "No active ping key" in again.output


def test_a_healthchecks_ping_key_can_be_adopted(app):
    adopted = "Q5hQ1Tq7t7YkK6nM2xZ3Ag"  # 22 URL-safe characters, as Healthchecks makes them
    result = ping_key_cli(app, "create", "from healthchecks", "--key", adopted)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == adopted
    assert f"{adopted[:6]}…" in ping_key_cli(app, "list").output
    with app.app_context():
        assert active_ping_key_id(adopted) is not None
        db.session.remove()
    assert ping_key_cli(app, "create", "twice", "--key", adopted).exit_code == 1
    assert ping_key_cli(app, "revoke", adopted).exit_code == 0


@pytest.mark.parametrize("bad", ["short", "2f7aed14-7f8e-4bca-a4ab-0bfc1cb1c0f5",
                                 "has a space " + "x" * 16])
def test_an_adopted_key_must_be_long_url_safe_and_not_a_uuid(app, bad):
    result = ping_key_cli(app, "create", "bad", "--key", bad)
    assert result.exit_code == 1 and "Error:" in result.output
