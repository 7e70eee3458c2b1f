"""§2: `flask db upgrade` and `flask api-key create`, run as a user would run them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import create_app
from tests.conftest import Client, close_app
from tests.helpers import assert_envelope

ROOT = Path(__file__).resolve().parent.parent
FLASK = [sys.executable, "-m", "flask", "--app", "app"]


def run_flask(args: list[str], database_url: str) -> str:
    env = {**os.environ, "DATABASE_URL": database_url, "MONITOR_ENABLED": "0",
           "LOG_FORMAT": "text"}
    result = subprocess.run(FLASK + args, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path, postgres_databases):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return postgres_databases.create()


def test_db_upgrade_then_created_keys_work(empty_database_url, serve, tmp_path):
    run_flask(["db", "upgrade"], empty_database_url)
    write_key = run_flask(["api-key", "create", "ops"], empty_database_url).splitlines()[-1]
    read_key = run_flask(["api-key", "create", "--read-only", "board"],
                         empty_database_url).splitlines()[-1]
    assert write_key.startswith("hbm_") and read_key.startswith("hbm_")

    app = create_app({"DATABASE_URL": empty_database_url, "MONITOR_ENABLED": False,
                      "LOG_FORMAT": "text", "SPOOL_DIR": str(tmp_path)})
    live = serve(app)
    assert Client(live.url, write_key).post("/api/v1/applications",
                                            json={"name": "x"}).status_code == 201
    reader = Client(live.url, read_key)
    assert len(reader.get("/api/v1/applications").json()["items"]) == 1
    assert_envelope(reader.post("/api/v1/applications", json={"name": "y"}), 403, "FORBIDDEN")

    # Rotation: list shows prefixes only; a revoked key stops working at once.
    listed = run_flask(["api-key", "list"], empty_database_url)
    read_prefix = read_key.split("_")[1]
    assert f"hbm_{read_prefix}_…" in listed and read_key not in listed
    run_flask(["api-key", "revoke", read_prefix], empty_database_url)
    assert_envelope(reader.get("/api/v1/applications"), 401, "UNAUTHORIZED")
    assert "revoked" in run_flask(["api-key", "list"], empty_database_url)
    close_app(app)
