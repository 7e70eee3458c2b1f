"""§6.7 /metrics: Prometheus names and labels, and totals that add up across gunicorn workers."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from auth import create_api_key
from database import db
from tests.conftest import ROOT, migrate
from transports import CHANNEL_KINDS, OUTCOMES, transient

SPEC_METRICS = {
    "hbmon_http_requests": "counter", "hbmon_heartbeats": "counter",
    "hbmon_heartbeats_spooled": "counter", "hbmon_applications": "gauge",
    "hbmon_alerts": "gauge", "hbmon_alert_delivery_attempts": "counter",
    "hbmon_alert_delivery_seconds": "histogram", "hbmon_circuit_breaker_state": "gauge",
    "hbmon_errors_logged": "counter", "hbmon_monitor_tick_seconds": "histogram",
    "hbmon_alert_delivery_lag_seconds": "histogram",
}


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a text exposition."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(scraped: dict, name: str, **labels) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_exposes_every_spec_metric(api, anonymous, application):
    response = anonymous.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    families = {family.name: family.type for family in
                text_string_to_metric_families(response.text)}
    for name, kind in SPEC_METRICS.items():
        assert families.get(name) == kind, name
    scraped = samples(response.text)
    assert value(scraped, "hbmon_applications", status="new") == 1
    assert value(scraped, "hbmon_applications", status="up") == 0
    assert value(scraped, "hbmon_alerts", state="pending") == 0


def test_requests_are_counted_by_url_rule_and_heartbeats_by_kind(api, anonymous, application):
    before = samples(anonymous.get("/metrics").text)
    uuid = application["uuid"]
    anonymous.get(f"/ping/{uuid}")
    anonymous.get(f"/ping/{uuid}/fail")
    anonymous.get(f"/ping/{uuid}/fail")
    anonymous.get("/no/such/page")
    after = samples(anonymous.get("/metrics").text)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("hbmon_http_requests_total", method="GET", route="/ping/<uuid>",
                 status="200") == 1
    assert delta("hbmon_http_requests_total", method="GET", route="/ping/<uuid>/<signal>",
                 status="200") == 2
    assert delta("hbmon_http_requests_total", method="GET", route="unmatched",
                 status="404") == 1
    assert not any(uuid in str(key) for key in after), "raw paths must not become labels"
    assert delta("hbmon_heartbeats_total", kind="ok") == 1
    assert delta("hbmon_heartbeats_total", kind="fail") == 2
    assert value(after, "hbmon_applications", status="down") == 1


def test_stored_errors_are_counted_by_type(app):
    def explode():
        raise LookupError("missing")

    app.add_url_rule("/boom", "boom", explode)
    client = app.test_client()
    before = samples(client.get("/metrics").get_data(as_text=True))
    client.get("/boom")
    client.get("/boom")
    after = samples(client.get("/metrics").get_data(as_text=True))
    assert (value(after, "hbmon_errors_logged_total", error_type="LookupError")
            - value(before, "hbmon_errors_logged_total", error_type="LookupError")) == 2


# --- several gunicorn workers ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def gunicorn_server(postgres_databases, tmp_path):
    """`gunicorn -w 2 -c gunicorn.conf.py 'app:create_app()'` on its own PostgreSQL database."""
    url = postgres_databases.create()
    migrate(url)
    port = free_port()
    multiprocess_dir = tmp_path / "prometheus"
    env = {**os.environ, "DATABASE_URL": url, "MONITOR_ENABLED": "0", "LOG_FORMAT": "json",
           "SPOOL_DIR": str(tmp_path / "spool"), "PROMETHEUS_MULTIPROC_DIR": str(multiprocess_dir),
           "SECRET_KEY": "test-secret"}
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py", "-w", "2",
             "-b", f"127.0.0.1:{port}", "app:create_app()"],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(base_url + "/health", timeout=2).status_code == 200:
                break
        except (requests.ConnectionError, requests.Timeout):  # workers still importing the app
            pass
        assert process.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, "gunicorn did not start:\n" + log_path.read_text()
        time.sleep(0.1)
    yield base_url, url, multiprocess_dir
    process.terminate()
    process.wait(timeout=20)


def test_two_workers_report_the_same_totals_on_every_scrape(gunicorn_server):
    base_url, database_url, multiprocess_dir = gunicorn_server
    app = create_app({"DATABASE_URL": database_url, "MONITOR_ENABLED": False,
                      "LOG_FORMAT": "text"})
    with app.app_context():
        _, key = create_api_key("metrics-test", False, app.extensions["hbmon"].clock.now())
        db.engine.dispose()
    headers = {"Authorization": f"Bearer {key}"}
    uuid = requests.post(base_url + "/api/v1/applications", json={"name": "job"},
                         headers=headers, timeout=10).json()["uuid"]

    pings = 60
    # Fresh connections from several threads at once, so both workers serve pings.
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: requests.get(f"{base_url}/ping/{uuid}",
                                                        timeout=10).status_code, range(pings)))
    assert statuses == [200] * pings
    worker_files = {path.name for path in multiprocess_dir.glob("counter_*.db")}
    assert len(worker_files) >= 2, f"only one worker served: {worker_files}"

    for _ in range(8):
        scraped = samples(requests.get(base_url + "/metrics", timeout=10).text)
        assert value(scraped, "hbmon_heartbeats_total", kind="ok") == pings
        assert value(scraped, "hbmon_http_requests_total", method="GET", route="/ping/<uuid>",
                     status="200") == pings
        assert value(scraped, "hbmon_http_requests_total", method="POST",
                     route="/api/v1/applications", status="201") == 1
        assert value(scraped, "hbmon_applications", status="up") == 1


def test_breaker_state_per_channel_is_exported_and_reported_in_dependencies(
        app, anonymous, clock):
    breakers = app.extensions["hbmon"].breakers
    breakers.get("channel:1")
    failing = breakers.get("channel:2")
    for _ in range(5):
        failing.record_failure(transient("503 from the webhook"))
    scraped = samples(anonymous.get("/metrics").text)
    assert value(scraped, "hbmon_circuit_breaker_state", channel="1") == 0
    assert value(scraped, "hbmon_circuit_breaker_state", channel="2") == 1
    clock.advance(seconds=31)  # open -> half-open by the clock
    scraped = samples(anonymous.get("/metrics").text)
    assert value(scraped, "hbmon_circuit_breaker_state", channel="2") == 2
    dependencies = anonymous.get("/health/dependencies").json()
    by_name = {entry["name"]: entry for entry in dependencies["dependencies"]}
    assert by_name["channel:1"]["healthy"] is True
    assert by_name["channel:2"]["healthy"] is False
    assert by_name["channel:2"]["failure_count"] == 5 and by_name["channel:2"]["opened_at"]
    assert dependencies["status"] == "degraded"


def test_a_fresh_multi_worker_server_shows_every_family_on_its_first_scrape(gunicorn_server):
    base_url, _, _ = gunicorn_server
    text = requests.get(base_url + "/metrics", timeout=10).text
    families = {family.name: family.type for family in text_string_to_metric_families(text)}
    for name, kind in SPEC_METRICS.items():
        assert families.get(name) == kind, name
    scraped = samples(text)
    for kind in ("ok", "fail", "start", "log"):
        assert scraped[("hbmon_heartbeats_total", (("kind", kind),))] == 0
    for channel_kind in CHANNEL_KINDS:
        for outcome in OUTCOMES:
            key = ("hbmon_alert_delivery_attempts_total",
                   (("channel_kind", channel_kind), ("outcome", outcome)))
            assert scraped[key] == 0, key
    assert scraped[("hbmon_alert_delivery_lag_seconds_count", ())] == 0
    assert scraped[("hbmon_monitor_tick_seconds_count", ())] == 0


def test_delivery_lag_is_measured_from_the_alert_creation(app, api, anonymous, sink, clock):
    channel = api.post("/api/v1/channels", json={"name": "hook", "kind": "webhook",
                                                 "url": sink.url}).json()
    watched = api.post("/api/v1/applications", json={"name": "job",
                                                     "channels": [channel["id"]]}).json()
    sink.default = 503
    anonymous.get(f"/ping/{watched['uuid']}/fail")
    before = samples(anonymous.get("/metrics").text)
    app.extensions["hbmon"].deliverer.drain()
    sink.default = 200
    clock.advance(seconds=42)  # past the backoff
    app.extensions["hbmon"].deliverer.drain()
    after = samples(anonymous.get("/metrics").text)
    assert len(sink.received) == 1
    assert value(after, "hbmon_alert_delivery_lag_seconds_count") - \
        value(before, "hbmon_alert_delivery_lag_seconds_count") == 1
    assert value(after, "hbmon_alert_delivery_lag_seconds_sum") - \
        value(before, "hbmon_alert_delivery_lag_seconds_sum") == 42
    assert value(after, "hbmon_circuit_breaker_state", channel=str(channel["id"])) == 0
