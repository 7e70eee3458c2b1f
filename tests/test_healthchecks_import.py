"""§9: `flask import-healthchecks` against a server speaking Healthchecks' documented v3 API."""
from __future__ import annotations

import socket

import pytest

from app import create_app
from tests.conftest import Client, LiveServer, close_app
from tests.factories import make_channel
from tests.healthchecks_server import API_KEY, READ_ONLY_KEY, HealthchecksServer, documented_check
from tests.test_cli import run_flask

FILESYSTEM = "31365bce-8da9-4729-8ff3-aaa71d56b712"
DATABASE = "803f680d-e89b-492b-82ef-2be7b774a92d"


@pytest.fixture
def source():
    server = HealthchecksServer().start()
    yield server
    server.stop()


def run_import(app, url: str, key: str = API_KEY, *extra: str):
    result = app.test_cli_runner().invoke(
        args=["import-healthchecks", "--url", url, "--api-key", key, *extra])
    return result


def applications(api) -> dict[str, dict]:
    return {item["uuid"]: item for item in api.get("/api/v1/applications").json()["items"]}


def test_every_check_becomes_an_application_with_the_same_uuid(app, api, anonymous, source):
    result = run_import(app, source.url)
    assert result.exit_code == 0, result.output
    imported = applications(api)
    assert sorted(imported) == sorted([FILESYSTEM, DATABASE])
    filesystem, database = imported[FILESYSTEM], imported[DATABASE]
    assert {key: filesystem[key] for key in ("name", "slug", "description", "tags",
                                             "period_seconds", "cron", "grace_seconds")} == {
        "name": "Filesystem Backup", "slug": "filesystem-backup",
        "description": "Runs incremental backup every hour", "tags": ["backup", "fs"],
        "period_seconds": 3600, "cron": None, "grace_seconds": 600}
    assert {key: database[key] for key in ("name", "slug", "tags", "period_seconds", "cron",
                                           "timezone", "grace_seconds", "status")} == {
        "name": "Database Backup", "slug": "database-backup", "tags": ["db", "production"],
        "period_seconds": None, "cron": "15 5 * * *", "timezone": "UTC",
        "grace_seconds": 1200, "status": "new"}
    # The crontab lines pinging the old host keep working here.
    assert anonymous.get(f"/ping/{FILESYSTEM}").status_code == 200
    lines = result.output.strip().splitlines()
    assert lines[-1] == ("2 checks: 2 created, 0 updated, 0 unchanged, 0 skipped; "
                         "2 channels to recreate.")
    assert any("email" in line and "'My Work Email' (used by 2 checks)" in line
               for line in lines)
    assert any("sms" in line and "'My Phone'" in line for line in lines)
    assert any("keyword filters not carried over" in line for line in lines)


def test_paused_state_carries_over_both_ways(app, api, source):
    source.checks[0]["status"] = "paused"
    run_import(app, source.url)
    assert applications(api)[FILESYSTEM]["status"] == "paused"
    source.checks[0]["status"] = "up"
    result = run_import(app, source.url)
    assert "resumed" in result.output
    assert applications(api)[FILESYSTEM]["status"] == "new"


def test_a_rerun_updates_and_never_duplicates(app, api, source):
    run_import(app, source.url)
    source.checks[1].update(name="DB Backup", schedule="0 4 * * *", tz="Europe/Riga")
    result = run_import(app, source.url)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith(
        "2 checks: 0 created, 1 updated, 1 unchanged, 0 skipped")
    imported = applications(api)
    assert len(imported) == 2
    assert (imported[DATABASE]["name"], imported[DATABASE]["cron"],
            imported[DATABASE]["timezone"]) == ("DB Backup", "0 4 * * *", "Europe/Riga")


def test_a_dry_run_changes_nothing(app, api, source):
    result = run_import(app, source.url, API_KEY, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "2 created" in result.output and "Dry run: nothing was changed." in result.output
    assert applications(api) == {}


def test_recreated_channels_are_attached_by_name_when_run_again(app, api, source):
    run_import(app, source.url)
    channel_id = make_channel(app, "My Work Email", is_operator=False, kind="email")
    result = run_import(app, source.url)
    assert "1 channels to recreate" in result.output
    imported = applications(api)
    assert imported[FILESYSTEM]["channels"] == [channel_id]
    assert imported[DATABASE]["channels"] == [channel_id]


def test_what_cannot_carry_over_is_skipped_or_noted(app, api, source):
    source.checks = [
        documented_check("7918b17b-a745-4db1-8575-9d2e07c97f79", "Month end",
                         schedule="*-*~1 12:00", tz="UTC"),
        documented_check("d43c84db-1502-4d86-a89d-181a33e25896", "Twin A", slug="twin"),
        documented_check("f618072a-7bde-4eee-af63-71a77c5723bc", "Twin B", slug="twin"),
    ]
    result = run_import(app, source.url)
    assert result.exit_code == 0, result.output
    assert "skip      7918b17b-a745-4db1-8575-9d2e07c97f79" in result.output
    assert "OnCalendar" in result.output
    assert "slug 'twin' is taken here by another check; imported without it" in result.output
    imported = applications(api)
    assert sorted(item["slug"] or "" for item in imported.values()) == ["", "twin"]


@pytest.mark.parametrize("problem", ["wrong key", "read-only key", "unreachable",
                                     "not healthchecks", "not http"])
def test_a_bad_source_ends_with_one_clear_line_and_changes_nothing(app, api, source, problem):
    url, key = source.url, API_KEY
    if problem == "wrong key":
        key = "Y" * 32
    elif problem == "read-only key":
        key = READ_ONLY_KEY
    elif problem == "unreachable":
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    elif problem == "not healthchecks":
        source.not_healthchecks = True
    else:
        url = "ftp://hc.example.com"
    result = run_import(app, url, key)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: Nothing imported: ")
    expected = {"wrong key": "refused the API key", "read-only key": "read-only",
                "unreachable": "Could not reach", "not healthchecks": "did not answer like "
                "Healthchecks", "not http": "must start with http"}[problem]
    assert expected in lines[0]
    assert applications(api) == {}


def test_a_url_given_with_its_api_path_works(app, api, source):
    result = run_import(app, source.url + "/api/v3/")
    assert result.exit_code == 0, result.output
    assert len(applications(api)) == 2
    assert source.requests == ["/api/v3/checks/", "/api/v3/channels/"]


def test_import_from_our_own_healthchecks_api_round_trips(app, api, server, source):
    """Create here, read there: this service's v3 API is a source the import reads."""
    run_import(app, source.url)
    ours = applications(api)
    result = run_import(app, server.url, api.session.headers["Authorization"][7:])
    assert result.exit_code == 0, result.output
    assert "2 unchanged" in result.output
    assert applications(api) == ours


@pytest.mark.slow
def test_the_readme_migration_in_five_commands(source, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'moved.db'}"
    run_flask(["db", "upgrade"], database_url)
    dry = run_flask(["import-healthchecks", "--url", source.url, "--api-key", API_KEY,
                     "--dry-run"], database_url)
    assert dry.splitlines()[-1].endswith("Dry run: nothing was changed.")
    done = run_flask(["import-healthchecks", "--url", source.url, "--api-key", API_KEY],
                     database_url)
    assert done.splitlines()[-1].startswith("2 checks: 2 created")
    new_key = run_flask(["api-key", "create", "terraform"], database_url).splitlines()[-1]
    app = create_app({"DATABASE_URL": database_url, "MONITOR_ENABLED": False,
                      "LOG_FORMAT": "text", "SPOOL_DIR": str(tmp_path / "spool")})
    live = LiveServer(app).start()
    try:
        client = Client(live.url)
        client.session.headers["X-Api-Key"] = new_key
        checks = client.get("/api/v3/checks/").json()["checks"]
        assert sorted(check["uuid"] for check in checks) == sorted([FILESYSTEM, DATABASE])
    finally:
        live.stop()
        close_app(app)
