"""§7: rate limits, webhook targets, input limits and security headers, over real HTTP."""
from __future__ import annotations

import socket
import threading
import time
import uuid as uuid_lib

import pytest
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import select

from database import db
from exceptions import RateLimited
from models import Alert, Channel
from rate_limits import NAMESPACE, STORE_TIMEOUT_SECONDS, SweptMemoryStorage
from tests.conftest import Client, make_key
from tests.faults import ChaosProxy
from tests.helpers import assert_envelope

PUBLIC_ADDRESS = "93.184.216.34"  # an IP literal: no DNS lookup needed to accept it


def new_application(api: Client, **fields) -> str:
    response = api.post("/api/v1/applications", json={"name": "job", "period_seconds": 60,
                                                      **fields})
    assert response.status_code == 201, response.text
    return response.json()["uuid"]


def assert_rate_limited(response) -> int:
    assert_envelope(response, 429, "RATE_LIMITED")
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 61
    return retry_after


# --- Rate limits ---------------------------------------------------------------------------

def test_pings_over_the_limit_per_uuid_and_client_get_429(served_app):
    app, live = served_app(PING_RATE_LIMIT="3/minute")
    api, anonymous = Client(live.url, make_key(app)), Client(live.url)
    limited, other = new_application(api), new_application(api)
    assert [anonymous.get(f"/ping/{limited}").status_code for _ in range(3)] == [200] * 3
    assert_rate_limited(anonymous.post(f"/ping/{limited}/fail"))
    accepted = anonymous.get(f"/ping/{other}")
    assert accepted.status_code == 200 and "Retry-After" not in accepted.headers
    stored = api.get(f"/api/v1/applications/{limited}/heartbeats").json()["items"]
    assert len(stored) == 3  # a refused ping is not recorded


def test_json_heartbeats_have_their_own_per_uuid_limit(served_app):
    app, live = served_app(PING_RATE_LIMIT="2/minute")
    api, anonymous = Client(live.url, make_key(app)), Client(live.url)
    uuid = new_application(api)
    url = f"/api/v1/applications/{uuid}/heartbeats"
    assert [anonymous.post(url, json={}).status_code for _ in range(2)] == [202, 202]
    assert_rate_limited(anonymous.post(url, json={}))


def test_a_client_spraying_uuids_is_limited(served_app):
    app, live = served_app(PING_CLIENT_RATE_LIMIT="4/minute")
    anonymous = Client(live.url)
    guesses = [str(uuid_lib.uuid4()) for _ in range(5)]
    for guess in guesses[:4]:
        assert_envelope(anonymous.get(f"/ping/{guess}"), 404, "HEARTBEAT_NOT_FOUND")
    assert_rate_limited(anonymous.get(f"/ping/{guesses[4]}"))


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_count(served_app):
    app, live = served_app(PING_RATE_LIMIT="2/minute", TRUSTED_PROXY_COUNT=1)
    api, anonymous = Client(live.url, make_key(app)), Client(live.url)
    uuid = new_application(api)
    flooder = {"X-Forwarded-For": "203.0.113.5"}
    assert [anonymous.get(f"/ping/{uuid}", headers=flooder).status_code
            for _ in range(2)] == [200, 200]
    assert_rate_limited(anonymous.get(f"/ping/{uuid}", headers=flooder))
    # The real job, elsewhere, is not locked out by someone who learned its UUID.
    assert anonymous.get(f"/ping/{uuid}", headers={"X-Forwarded-For": "198.51.100.7"}) \
        .status_code == 200


def test_without_trusted_proxies_a_forged_forwarded_for_changes_nothing(served_app):
    app, live = served_app(PING_RATE_LIMIT="2/minute")
    api, anonymous = Client(live.url, make_key(app)), Client(live.url)
    uuid = new_application(api)
    for n in range(2):
        assert anonymous.get(f"/ping/{uuid}",
                             headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code == 200
    assert_rate_limited(anonymous.get(f"/ping/{uuid}",
                                      headers={"X-Forwarded-For": "203.0.113.99"}))


def test_management_api_is_limited_per_key(served_app):
    app, live = served_app(API_RATE_LIMIT="3/minute")
    first, second = Client(live.url, make_key(app, "a")), Client(live.url, make_key(app, "b"))
    assert [first.get("/api/v1/applications").status_code for _ in range(3)] == [200] * 3
    assert_rate_limited(first.get("/api/v1/applications"))
    assert second.get("/api/v1/applications").status_code == 200


def test_dashboard_sign_in_attempts_are_limited(served_app):
    app, live = served_app(LOGIN_RATE_LIMIT="2/minute")
    browser = Client(live.url)
    page = browser.get("/login").text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    for guess in ("hbm_aaaa_guess1", "hbm_bbbb_guess2"):
        response = browser.post("/login", data={"api_key": guess, "csrf_token": token})
        assert response.status_code == 200 and "not valid" in response.text
    assert_rate_limited(browser.post("/login", data={"api_key": "hbm_c_3", "csrf_token": token}))
    assert browser.get("/login").status_code == 200  # only sign-in attempts are counted


def test_redis_storage_shares_the_count_between_processes(served_app):
    """Within the local shares' tolerance (redis_counters.py): a limit of 3 never refuses
    before 3 and lets through at most 3 + 1 per process; counted apart, 8 would pass."""
    storage = "redis://127.0.0.1:6379/15"
    app, first = served_app(PING_RATE_LIMIT="3/minute", RATE_LIMIT_STORAGE_URL=storage)
    _, second = served_app(PING_RATE_LIMIT="3/minute", RATE_LIMIT_STORAGE_URL=storage)
    uuid = new_application(Client(first.url, make_key(app)))
    answers = [Client(server.url).get(f"/ping/{uuid}") for server in (first, second) * 4]
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) == {200, 429}
    assert statuses.index(429) >= 3
    assert 3 <= statuses.count(200) <= 3 + 2
    for answer in answers:
        if answer.status_code == 429:
            assert_rate_limited(answer)


def test_redis_counts_a_heartbeats_two_limits_in_the_windows_limits_itself_keeps(served_app):
    """One script counts both counters, under the keys and windows of limits' fixed windows:
    a process counting with limits' own calls (an older release, during a rolling upgrade)
    shares the counts exactly, and a refusal says how long its window has left."""
    storage = "redis://127.0.0.1:6379/15"
    app, live = served_app(PING_RATE_LIMIT="3/minute", PING_CLIENT_RATE_LIMIT="5/minute",
                           RATE_LIMIT_STORAGE_URL=storage)
    uuid = new_application(Client(live.url, make_key(app)))
    client = f"192.0.2.{uuid_lib.uuid4().int % 250 + 1}"  # its own client counter this run
    limits_itself = FixedWindowRateLimiter(storage_from_string(storage))
    per_uuid, per_client = parse("3/minute"), parse("5/minute")
    with app.test_client() as browser:
        assert browser.get(f"/ping/{uuid}", environ_base={"REMOTE_ADDR": client}).status_code \
            == 200
    app.extensions["hbmon"].rate_limits.redis.flush()  # sent at once, not within 50 ms
    assert limits_itself.hit(per_uuid, NAMESPACE, "ping-uuid", f"{uuid}@{client}")
    assert limits_itself.get_window_stats(per_client, NAMESPACE, "ping-client",
                                          client).remaining == 4
    with app.test_client() as browser:
        answers = [browser.get(f"/ping/{uuid}", environ_base={"REMOTE_ADDR": client})
                   for _ in range(2)]
    # 3 counted per UUID: the first ping, limits' hit, the second (on this process's share)
    assert [answer.status_code for answer in answers] == [200, 429]
    assert 1 <= int(answers[1].headers["Retry-After"]) <= 61
    assert limits_itself.get_window_stats(per_client, NAMESPACE, "ping-client",
                                          client).remaining == 2  # 3 pings over the wire


def test_a_management_request_is_counted_in_redis_at_once_in_one_round_trip(make_app,
                                                                          monkeypatch):
    """Only heartbeats take a local share (tests/test_redis_counters.py); the rest is exact."""
    app = make_app(API_RATE_LIMIT="2/minute", RATE_LIMIT_STORAGE_URL="redis://127.0.0.1:6379/15")
    rate_limits = app.extensions["hbmon"].rate_limits
    connection = rate_limits.redis.storage.get_connection()
    sent = []
    execute_command = connection.execute_command
    monkeypatch.setattr(connection, "execute_command",
                        lambda *args, **options: sent.append(args[0])
                        or execute_command(*args, **options))
    request = (rate_limits.api_per_key, "api", f"key:{uuid_lib.uuid4().hex[:16]}")
    rate_limits.hit(request)  # may load the script first
    sent.clear()
    rate_limits.hit(request)
    with pytest.raises(RateLimited):
        rate_limits.hit(request)
    assert sent == ["EVALSHA", "EVALSHA"]  # the refusal's Retry-After included


def test_pings_are_still_accepted_and_limited_while_the_rate_limit_store_is_down(served_app):
    app, live = served_app(PING_RATE_LIMIT="3/minute", RATE_LIMIT_STORAGE_URL="redis://127.0.0.1:1/0")
    api, anonymous = Client(live.url, make_key(app)), Client(live.url)
    uuid = new_application(api)
    assert [anonymous.get(f"/ping/{uuid}").status_code for _ in range(3)] == [200] * 3
    assert_rate_limited(anonymous.get(f"/ping/{uuid}"))  # counted in memory meanwhile


def test_a_store_lost_mid_window_leaves_each_process_what_it_last_heard(make_app):
    """Counting on from Redis's last counts, not from zero: a client near its limit when the
    link is cut does not get a fresh limit's worth through each process."""
    proxy = ChaosProxy("127.0.0.1", 6379)
    try:
        app = make_app(PING_RATE_LIMIT="5/minute",
                       RATE_LIMIT_STORAGE_URL=f"redis://127.0.0.1:{proxy.port}/15")
        rate_limits = app.extensions["hbmon"].rate_limits
        uuid, client = str(uuid_lib.uuid4()), "192.0.2.9"
        for _ in range(4):
            rate_limits.check_heartbeat(uuid, client)
        rate_limits.redis.flush()  # Redis has counted 4
        proxy.cut()
        rate_limits.check_heartbeat(uuid, client)  # the fifth, counted here
        with pytest.raises(RateLimited):
            rate_limits.check_heartbeat(uuid, client)
        with pytest.raises(RateLimited):
            rate_limits.check_heartbeat(uuid, client)
    finally:
        proxy.close()


def test_a_rate_limit_store_that_stops_answering_delays_pings_by_its_timeout_only(served_app):
    proxy = ChaosProxy("127.0.0.1", 6379)
    try:
        app, live = served_app(RATE_LIMIT_STORAGE_URL=f"redis://127.0.0.1:{proxy.port}/15")
        api, anonymous = Client(live.url, make_key(app)), Client(live.url)
        uuid = new_application(api)
        assert anonymous.get(f"/ping/{uuid}").status_code == 200  # connected to the store
        proxy.stall()  # a link cut on the way: nothing answers, nothing is refused either
        started = time.monotonic()
        statuses = [anonymous.get(f"/ping/{uuid}", timeout=10).status_code for _ in range(3)]
        elapsed = time.monotonic() - started
    finally:
        proxy.close()
    assert statuses == [200] * 3
    # One wait of STORE_TIMEOUT_SECONDS, then counted in memory; without a timeout the first
    # ping would wait for TCP to give up.
    assert elapsed < STORE_TIMEOUT_SECONDS + 4


class HungStore:
    """A stand-in for a Redis server that accepts connections and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)  # held open, never read, never answered

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def hung_store():
    store = HungStore()
    yield store
    store.close()


def test_a_hung_rate_limit_store_costs_a_ping_a_moment_then_fails_open(served_app, hung_store):
    app, live = served_app(PING_RATE_LIMIT="3/minute",
                           RATE_LIMIT_STORAGE_URL=f"redis://127.0.0.1:{hung_store.port}/0")
    api, anonymous = Client(live.url, make_key(app)), Client(live.url)
    uuid = new_application(api)
    answers, slowest = [], 0.0
    for _ in range(3):
        started = time.monotonic()
        answers.append(anonymous.get(f"/ping/{uuid}").status_code)
        slowest = max(slowest, time.monotonic() - started)
    assert answers == [200] * 3
    assert hung_store.connections, "the store was never asked"
    # The budget is 0.1 s (rate_limits.STORE_TIMEOUT_SECONDS); the bound leaves room for a
    # busy machine. Without timeouts the first ping waited for as long as the store hung.
    assert slowest < 1.0
    assert_rate_limited(anonymous.get(f"/ping/{uuid}"))  # counted in memory meanwhile


# --- Webhook targets -----------------------------------------------------------------------

REFUSED_TARGETS = [
    "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/hook",
    "http://172.16.0.9/hook", "http://192.168.1.1/hook", "http://169.254.169.254/latest/meta-data",
    "http://100.100.100.200/", "http://[::1]:9000/hook", "http://[fe80::1]/hook",
    "http://[fd00:ec2::254]/", "http://[::ffff:127.0.0.1]/hook", "http://224.0.0.1/hook",
    "http://0.0.0.0/hook", "http://100.64.0.1/hook", "http://no-such-host.invalid/hook",
]


@pytest.mark.parametrize("url", REFUSED_TARGETS)
def test_webhook_to_a_private_address_is_refused_at_creation(served_app, url):
    app, live = served_app(ALLOW_PRIVATE_WEBHOOK_TARGETS=False)
    api = Client(live.url, make_key(app))
    error = assert_envelope(api.post("/api/v1/channels", json={
        "name": "inward", "kind": "webhook", "url": url}), 422, "VALIDATION_ERROR")
    message = error["details"]["url"][0]
    assert "Refused" in message or message == "Not a valid URL.", message
    assert api.get("/api/v1/channels").json()["items"] == []


def test_public_targets_are_accepted_and_changing_one_to_private_is_refused(served_app):
    app, live = served_app(ALLOW_PRIVATE_WEBHOOK_TARGETS=False)
    api = Client(live.url, make_key(app))
    created = api.post("/api/v1/channels", json={
        "name": "public", "kind": "slack", "url": f"https://{PUBLIC_ADDRESS}/services/T0/B0"})
    assert created.status_code == 201, created.text
    channel_id = created.json()["id"]
    assert_envelope(api.patch(f"/api/v1/channels/{channel_id}",
                              json={"url": "http://10.0.0.1/"}), 422, "VALIDATION_ERROR")


def test_private_targets_are_allowed_when_configured(served_app):
    app, live = served_app(ALLOW_PRIVATE_WEBHOOK_TARGETS=True)
    api = Client(live.url, make_key(app))
    assert api.post("/api/v1/channels", json={"name": "lan", "kind": "webhook",
                                              "url": "http://192.168.1.1/hook"}).status_code == 201


def test_delivery_rechecks_the_address_the_target_resolves_to_now(served_app, sink):
    """A channel accepted earlier whose host now resolves inward gets nothing sent."""
    app, live = served_app(ALLOW_PRIVATE_WEBHOOK_TARGETS=False)
    api = Client(live.url, make_key(app))
    now = app.extensions["hbmon"].clock.now()
    with app.app_context():  # stored as if its DNS record changed after it was checked
        channel = Channel(name="rebound", kind="webhook", url=sink.url, is_operator=False,
                          created_at=now, updated_at=now)
        db.session.add(channel)
        db.session.commit()
        channel_id = channel.id
    tested = api.post(f"/api/v1/channels/{channel_id}/test").json()
    assert tested["delivered"] is False and tested["outcome"] == "permanent_error"
    assert "loopback" in tested["error"]
    uuid = new_application(api, channels=[channel_id])
    assert Client(live.url).get(f"/ping/{uuid}/fail").status_code == 200
    with app.app_context():
        app.extensions["hbmon"].deliverer.drain(10)
        alert = db.session.execute(select(Alert)).scalar_one()
        assert (alert.state, alert.attempt_count) == ("failed", 1)
        assert "loopback" in alert.last_error
    assert sink.received == []


def test_redirects_are_not_followed(served_app, sink, other_sink):
    app, live = served_app(ALLOW_PRIVATE_WEBHOOK_TARGETS=True)
    sink.then({"status": 302, "headers": {"Location": other_sink.url}})
    api = Client(live.url, make_key(app))
    channel = api.post("/api/v1/channels", json={"name": "moved", "kind": "webhook",
                                                 "url": sink.url}).json()
    tested = api.post(f"/api/v1/channels/{channel['id']}/test").json()
    assert (tested["outcome"], tested["http_status"]) == ("permanent_error", 302)
    assert other_sink.received == []


# --- Input limits and headers --------------------------------------------------------------

def test_deeply_nested_json_is_refused_before_parsing(api, application):
    body = '{"metadata": {"a": ' + "[" * 40 + "]" * 40 + "}}"
    response = api.post(f"/api/v1/applications/{application['uuid']}/heartbeats", data=body,
                        headers={"Content-Type": "application/json"})
    assert_envelope(response, 400, "MALFORMED_REQUEST")
    shallow = '{"metadata": {"note": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}}'
    assert api.post(f"/api/v1/applications/{application['uuid']}/heartbeats", data=shallow,
                    headers={"Content-Type": "application/json"}).status_code == 202


@pytest.mark.parametrize("field, value", [("name", "n" * 201), ("description", "d" * 2001),
                                          ("tags", ["t" * 65]), ("cron", "* " * 100)])
def test_over_long_strings_are_refused_with_field_details(api, field, value):
    body = {"name": "job", "period_seconds": 60, field: value}
    if field == "cron":
        body.pop("period_seconds")
    error = assert_envelope(api.post("/api/v1/applications", json=body), 422,
                            "VALIDATION_ERROR")
    assert [key.split(".")[0] for key in error["details"]] == [field]  # e.g. tags.0


def test_every_answer_carries_security_headers(server, api):
    answers = {"json": api.get("/api/v1/applications"),
               "error": Client(server.url).get("/api/v1/applications"),
               "ping": Client(server.url).get(f"/ping/{uuid_lib.uuid4()}"),
               "html": Client(server.url).get("/login")}
    for name, response in answers.items():
        headers = response.headers
        assert headers["X-Content-Type-Options"] == "nosniff", name
        assert headers["X-Frame-Options"] == "DENY", name
        assert headers["Referrer-Policy"] == "no-referrer", name
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], name
    html_policy = answers["html"].headers["Content-Security-Policy"]
    # The console's script and stylesheet come from this host only; nothing inline runs.
    assert "script-src 'self';" in html_policy and "default-src 'none'" in html_policy
    assert "unsafe-inline" not in html_policy and "connect-src 'self';" in html_policy
    assert answers["html"].headers["Cache-Control"] == "no-store"



def test_in_process_rate_counters_start_no_thread_per_hit_and_sweep_expired_ones(monkeypatch):
    """limits' MemoryStorage would start a timer thread 10 ms after a hit, all day long."""



    storage = SweptMemoryStorage()
    limiter = FixedWindowRateLimiter(storage)
    started = []
    monkeypatch.setattr(threading.Thread, "start", lambda thread: started.append(thread))
    one_per_hour = parse("1/hour")
    assert [limiter.hit(one_per_hour, "test", str(n)) for n in range(500)] == [True] * 500
    assert not limiter.hit(one_per_hour, "test", "0")
    assert started == [] and len(storage.storage) == 500
    for key in storage.expirations:  # as if their hour had passed
        storage.expirations[key] = 0.0
    storage._swept_at -= SweptMemoryStorage.SWEEP_INTERVAL_SECONDS
    assert limiter.hit(one_per_hour, "test", "fresh")
    assert list(storage.storage) == [one_per_hour.key_for("test", "fresh")]
