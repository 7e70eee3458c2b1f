"""Fault injection against a real server: the database cut, a failing sink, a killed monitor,
a stopped service. What a user would check: nothing lost, nothing doubled, every error the
envelope, recovery in seconds, no false alarm."""
from __future__ import annotations

import collections
import datetime as dt
import threading
import time

import pytest
import requests
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from app import create_app
from applications import create_application
from channels import create_channel
from database import db
from ingest.orm_store import record_heartbeat
from ingest.signals import Signal
from models import Alert, DeliveryAttempt, Heartbeat, ServiceState
from outage import ALIVE_KEY
from tests.conftest import TEST_DATABASE_URL, make_key, migrate
from tests.faults import ChaosProxy, ClockFile, MonitorProcess, ServerProcess
from tests.helpers import ENVELOPE_KEYS, assert_no_leak, wait_until
from utils.clock import ManualClock

pytestmark = pytest.mark.slow
T0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


class Fixture:
    """A migrated PostgreSQL database with a key, and an in-process app to inspect it."""

    def __init__(self, url: str, tmp_path):
        self.url = url
        self.tmp_path = tmp_path
        migrate(url)
        self.app = create_app({"DATABASE_URL": url, "MONITOR_ENABLED": False,
                               "LOG_FORMAT": "text", "CLOCK": ManualClock(T0),
                               "SPOOL_DIR": str(tmp_path / "inspect-spool")})
        self.key = make_key(self.app)

    def env(self, **extra) -> dict[str, str]:
        (self.tmp_path / "prometheus").mkdir(exist_ok=True)
        return {"SPOOL_DIR": str(self.tmp_path / "spool"),
                "PROMETHEUS_MULTIPROC_DIR": str(self.tmp_path / "prometheus"),
                "DATABASE_URL": self.url, **extra}

    def count(self, statement):
        with self.app.app_context():
            value = db.session.execute(statement).scalar()
            db.session.remove()
        return value

    def stored_messages(self) -> list[str]:
        with self.app.app_context():
            messages = db.session.execute(select(Heartbeat.message)).scalars().all()
            db.session.remove()
        return messages

    def wait_for_heartbeats(self, count: int, timeout_seconds: float) -> None:
        """Until `count` heartbeats are stored (a spool being replayed), or the timeout."""
        wait_until(lambda: self.count(select(func.count(Heartbeat.id))) >= count,
                   timeout_seconds, 0.1, f"{count} heartbeats not stored")

    def wait_for_tick_at(self, moment: dt.datetime, timeout_seconds: float = 15) -> None:
        """Until a monitor has finished a tick (judged, then noted it was alive) at `moment`."""
        alive = select(ServiceState.updated_at).where(ServiceState.key == ALIVE_KEY)
        wait_until(lambda: (self.count(alive) or T0 - dt.timedelta(days=1)) >= moment,
                   timeout_seconds, 0.05, f"no monitor tick at {moment}")

    def failed_applications(self, count: int, webhook_url: str) -> None:
        """`count` applications of one webhook channel, each failed: an alert each, queued."""
        with self.app.app_context():
            channel = create_channel({"name": "hook", "kind": "webhook", "url": webhook_url}, T0)
            for n in range(count):
                application = create_application({"name": f"job-{n}",
                                                  "channels": [channel.id]}, T0)
                record_heartbeat(application.uuid, Signal(kind="fail", received_at=T0))
            db.session.remove()

    def close(self):
        with self.app.app_context():
            db.engine.dispose()


@pytest.fixture
def fixture(postgres_databases, tmp_path):
    environment = Fixture(postgres_databases.create(), tmp_path)
    yield environment
    environment.close()


def _through(proxy: ChaosProxy, url: str) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False)


def _api(base: str, key: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    session.base = base
    return session


def test_database_cut_loses_no_heartbeat_and_recovers_quickly(fixture):
    target = make_url(TEST_DATABASE_URL)
    proxy = ChaosProxy(target.host or "127.0.0.1", target.port or 5432)
    server = ServerProcess(fixture.env(DATABASE_URL=_through(proxy, fixture.url),
                                       MONITOR_INTERVAL_SECONDS="0.5"), workers=2).start()
    try:
        api = _api(server.url, fixture.key)
        uuids = [api.post(server.url + "/api/v1/applications",
                          json={"name": f"job-{n}", "period_seconds": 3600}).json()["uuid"]
                 for n in range(4)]
        accepted, errors, latencies = [], [], []
        lock = threading.Lock()
        stop = threading.Event()

        def client(number: int):
            session, sent = requests.Session(), 0
            while not stop.is_set():
                message = f"client{number}-beat{sent}"
                sent += 1
                started = time.monotonic()
                try:
                    if sent % 2:
                        response = session.post(f"{server.url}/ping/{uuids[number]}",
                                                data=message, timeout=10)
                    else:
                        response = session.post(
                            f"{server.url}/api/v1/applications/{uuids[number]}/heartbeats",
                            json={"message": message}, timeout=10)
                except requests.RequestException as error:
                    with lock:
                        errors.append(("transport", repr(error)))
                    continue
                with lock:
                    latencies.append(time.monotonic() - started)
                    if response.status_code in (200, 202):
                        accepted.append(message)
                    else:
                        errors.append((response.status_code, response.text))
                time.sleep(0.02)

        clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for thread in clients:
            thread.start()
        time.sleep(2)
        proxy.cut()
        cut_at = time.monotonic()
        management_during_cut, health_during_cut = [], []
        while time.monotonic() - cut_at < 10:
            started = time.monotonic()
            response = api.get(server.url + "/api/v1/applications", timeout=10)
            management_during_cut.append((response, time.monotonic() - started))
            started = time.monotonic()
            health = requests.get(server.url + "/health/dependencies", timeout=10)
            summary = requests.get(server.url + "/health", timeout=10)
            health_during_cut.append((health, summary, time.monotonic() - started))
            time.sleep(0.4)
        proxy.restore()
        restored_at = time.monotonic()
        recovery_seconds = None
        while time.monotonic() - restored_at < 30:
            if api.get(server.url + "/api/v1/applications", timeout=10).status_code == 200:
                recovery_seconds = time.monotonic() - restored_at
                break
            time.sleep(0.05)
        time.sleep(2)
        stop.set()
        for thread in clients:
            thread.join()

        # Everything answered 200/202 ends up stored, exactly once, once the spool is replayed.
        fixture.wait_for_heartbeats(len(accepted), 30)
    finally:
        exit_code = server.stop()
        proxy.close()

    stored = fixture.stored_messages()
    duplicates = [m for m, n in collections.Counter(stored).items() if n > 1]
    print(f"\naccepted {len(accepted)}, stored {len(stored)}, recovery {recovery_seconds:.2f} s,"
          f" slowest heartbeat answer {max(latencies):.2f} s")
    assert exit_code == 0, server.stderr_tail()
    assert len(accepted) > 100
    assert duplicates == []
    assert sorted(stored) == sorted(accepted)
    assert errors == [], server.stderr_tail()  # known applications: never refused
    assert max(latencies) < 1.5
    statuses = {response.status_code for response, _ in management_during_cut}
    assert 503 in statuses
    for response, seconds in management_during_cut:
        if response.status_code != 200:
            assert response.status_code == 503 and seconds < 3
            assert set(response.json()["error"]) == ENVELOPE_KEYS
            assert response.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
            assert int(response.headers["Retry-After"]) > 0
            assert_no_leak(response.text)
    assert recovery_seconds is not None and recovery_seconds < 5
    for health, summary, seconds in health_during_cut[2:]:  # once the outage is noticed
        assert seconds < 3 and health.status_code == 200
        by_name = {entry["name"]: entry for entry in health.json()["dependencies"]}
        assert by_name["database"]["healthy"] is False
        assert by_name["spool"]["state"] in ("empty", "replay_pending")
        assert summary.status_code == 200 and summary.json()["status"] == "degraded"
        assert "database unavailable" in summary.json()["reasons"][0]
    assert any(by_name["spool"]["depth"]["heartbeats_bytes"] > 0
               for by_name in ({entry["name"]: entry for entry in health.json()["dependencies"]}
                               for health, _, _ in health_during_cut[2:]))


def test_alert_sink_failing_then_recovering_gets_each_alert_once(fixture, sink, other_sink):
    clock = ClockFile(fixture.tmp_path / "clock", T0)
    server = ServerProcess(fixture.env(CLOCK_FILE=str(clock.path), MONITOR_INTERVAL_SECONDS="0.2",
                                       ALERT_TIMEOUT_SECONDS="1")).start()
    # 503 three times, then 429 with Retry-After, then hanging past the timeout, then healthy.
    sink.then(503, 503, 503, {"status": 429, "headers": {"Retry-After": "300"}},
              {"status": 503, "hang": 2}, {"status": 503, "hang": 2})
    try:
        api = _api(server.url, fixture.key)
        flaky = api.post(server.url + "/api/v1/channels", json={
            "name": "flaky", "kind": "webhook", "url": sink.url}).json()
        healthy = api.post(server.url + "/api/v1/channels", json={
            "name": "healthy", "kind": "webhook", "url": other_sink.url}).json()
        uuids = []
        for n in range(5):
            app = api.post(server.url + "/api/v1/applications", json={
                "name": f"job-{n}", "channels": [flaky["id"], healthy["id"]]}).json()
            uuids.append(app["uuid"])
            assert requests.get(f"{server.url}/ping/{app['uuid']}/fail").status_code == 200
        failed_at = time.monotonic()
        while len(other_sink.received) < 5 and time.monotonic() - failed_at < 20:
            time.sleep(0.05)
        healthy_seconds = time.monotonic() - failed_at
        delivered = select(func.count(Alert.id)).where(Alert.state == "delivered")
        while fixture.count(delivered) < 5 and time.monotonic() - failed_at < 20:
            time.sleep(0.05)  # recorded too: moving the clock now cannot expire their claims

        def backoff_retry_after_and_recovery_pass_by() -> bool:
            clock.advance(60)
            return len(set(sink.alert_ids())) == 5
        wait_until(backoff_retry_after_and_recovery_pass_by, 60, 0.3)
    finally:
        exit_code = server.stop()  # a clean stop: nothing is in flight once it returns
    assert exit_code == 0, server.stderr_tail()
    assert healthy_seconds < 5
    assert sorted(collections.Counter(other_sink.alert_ids()).values()) == [1] * 5
    assert sorted(collections.Counter(sink.alert_ids()).values()) == [1] * 5
    assert {r["json"]["application"]["uuid"] for r in sink.received} == set(uuids)
    with fixture.app.app_context():
        states = db.session.execute(select(Alert.state)).scalars().all()
    assert states == ["delivered"] * 10


def test_database_cut_while_sending_records_the_outcome_once_it_is_back(fixture, sink, caplog):
    """A send that succeeds while the database is cut is recorded when it returns, and the
    alert is not sent again; the slot sends nothing more until then."""
    fixture.failed_applications(3, sink.url)  # one alert each, queued
    target = make_url(TEST_DATABASE_URL)
    proxy = ChaosProxy(target.host or "127.0.0.1", target.port or 5432)
    delivering = create_app({"DATABASE_URL": _through(proxy, fixture.url), "MONITOR_ENABLED": False,
                             "LOG_FORMAT": "text", "CLOCK": ManualClock(T0),
                             "SPOOL_DIR": str(fixture.tmp_path / "delivering-spool"),
                             "ALERT_CONCURRENCY_PER_CHANNEL": 1})
    deliverer = delivering.extensions["hbmon"].deliverer
    sink.default = {"status": 200, "hang": 1.0}
    try:
        assert deliverer.dispatch_due() == 1  # one slot, the channel's three alerts in turn
        proxy.cut()  # while the first send hangs
        deadline = time.monotonic() + 15
        while "alert outcomes failed, kept to retry" not in caplog.text \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "alert outcomes failed, kept to retry" in caplog.text
        assert len(sink.received) == 1  # and nothing more is sent while it cannot be recorded
        proxy.restore()
        sink.default = 200
        deliverer.drain(15)
    finally:
        delivering.extensions["hbmon"].shutdown()
        with delivering.app_context():
            db.engine.dispose()
        proxy.close()
    with fixture.app.app_context():
        alerts = list(db.session.execute(select(Alert)).scalars())
        attempts = db.session.execute(select(DeliveryAttempt.alert_id)).scalars().all()
    assert sorted(collections.Counter(sink.alert_ids()).values()) == [1, 1, 1]
    assert {(alert.state, alert.attempt_count) for alert in alerts} == {("delivered", 1)}
    assert sorted(attempts) == sorted(alert.id for alert in alerts)


def test_monitor_killed_while_delivering_loses_no_alert(fixture, sink):
    clock = ClockFile(fixture.tmp_path / "clock", T0)
    fixture.failed_applications(6, sink.url)
    sink.default = {"status": 200, "hang": 1.5}  # slow enough to be killed mid-delivery
    env = fixture.env(CLOCK_FILE=str(clock.path), MONITOR_INTERVAL_SECONDS="0.2",
                      ALERT_TIMEOUT_SECONDS="5")
    first = MonitorProcess(env).start()
    deadline = time.monotonic() + 30
    while not sink.received and time.monotonic() < deadline:
        time.sleep(0.02)
    first.kill()
    delivered_before_kill = len(sink.received)
    assert delivered_before_kill < 6

    second = MonitorProcess(env).start()
    try:
        deadline = time.monotonic() + 60
        while len(set(sink.alert_ids())) < 6 and time.monotonic() < deadline:
            clock.advance(60)  # past the dead process's claims (leases)
            time.sleep(0.5)
    finally:
        exit_code = second.stop()
    assert exit_code == 0, second.stderr_tail()
    with fixture.app.app_context():
        sessions = db.session.execute(text(
            "SELECT pid, state, xact_start, left(query, 120) FROM pg_stat_activity "
            "WHERE datname = current_database()")).all()
        alerts = list(db.session.execute(select(Alert)).scalars())
        alert_ids = {alert.uuid for alert in alerts}
        states = [(alert.uuid[:8], alert.state, alert.attempt_count, alert.last_error,
                   alert.next_attempt_at, alert.claimed_until) for alert in alerts]
    if set(sink.alert_ids()) != alert_ids:  # shown by pytest on failure
        print("alerts:", *states, "sessions:", *sessions, "clock:", clock.now,
              "received:", sink.alert_ids(),
              "monitor log:", second.stderr_tail(), sep="\n")
    assert set(sink.alert_ids()) == alert_ids and len(alert_ids) == 6
    # At least once: only the (at most two) sends cut short by the kill may arrive again.
    resent = {uuid: n for uuid, n in collections.Counter(sink.alert_ids()).items() if n > 1}
    assert len(resent) <= 2 and all(n == 2 for n in resent.values()), resent


def test_delivery_process_killed_mid_send_holds_up_its_alerts_at_most_15_seconds(fixture, sink):
    """SPEC §6.4a: the claims of a SIGKILLed process are free once it has not been seen alive
    for 10 s, long before their lease (here 90 s) runs out; the resend carries the same key."""
    clock = ClockFile(fixture.tmp_path / "clock", T0)
    fixture.failed_applications(4, sink.url)
    sink.default = {"status": 200, "hang": 60}  # the kill finds both of the channel's slots mid-send
    env = fixture.env(CLOCK_FILE=str(clock.path), MONITOR_INTERVAL_SECONDS="0.2",
                      ALERT_TIMEOUT_SECONDS="20")
    first = MonitorProcess(env).start()
    wait_until(lambda: sink.answered["hang"] >= 2, 30, 0.02, "no send in flight")
    first.kill()
    sink.default = 200
    sink.release.set()  # the cut-off sends reach the receiver after all: a resend will follow
    claimed = select(func.count(Alert.id)).where(Alert.claimed_until > T0 + dt.timedelta(
        seconds=60))
    assert fixture.count(claimed) == 4  # all held by the dead process, under a 90 s lease

    second = MonitorProcess(env).start()
    try:
        clock.advance(11)  # the dead process was last alive at T0
        wait_until(lambda: len(set(sink.alert_ids())) == 4, 20, 0.05,
                   "alerts of the killed process not resent")
        wait_until(lambda: fixture.count(select(func.count(Alert.id)).where(
            Alert.state == "delivered")) == 4, 10, 0.05, "deliveries not recorded")
    finally:
        exit_code = second.stop()
    assert exit_code == 0, second.stderr_tail()
    with fixture.app.app_context():
        delivered_at = db.session.execute(select(Alert.delivered_at)).scalars().all()
    assert max(delivered_at) <= T0 + dt.timedelta(seconds=15)
    by_alert = collections.defaultdict(list)
    for request in sink.received:
        by_alert[request["json"]["alert_id"]].append(request["headers"]["Idempotency-Key"])
    resent = {uuid: keys for uuid, keys in by_alert.items() if len(keys) > 1}
    assert len(resent) == 2  # the two sends cut off by the kill, sent again
    assert all(keys == [uuid, uuid] for uuid, keys in resent.items())


def test_service_stopped_across_deadlines_sends_no_false_alarm(fixture, sink):
    clock = ClockFile(fixture.tmp_path / "clock", T0)
    env = fixture.env(CLOCK_FILE=str(clock.path), MONITOR_INTERVAL_SECONDS="0.1",
                      OUTAGE_GAP_SECONDS="45")  # the clock steps below are shorter
    server = ServerProcess(env).start()
    api = _api(server.url, fixture.key)
    channel = api.post(server.url + "/api/v1/channels", json={
        "name": "hook", "kind": "webhook", "url": sink.url}).json()
    keeps_pinging = api.post(server.url + "/api/v1/applications", json={
        "name": "keeps-pinging", "period_seconds": 60, "grace_seconds": 30,
        "channels": [channel["id"]]}).json()["uuid"]
    really_stopped = api.post(server.url + "/api/v1/applications", json={
        "name": "really-stopped", "period_seconds": 60, "grace_seconds": 30,
        "channels": [channel["id"]]}).json()["uuid"]
    for uuid in (keeps_pinging, really_stopped):
        requests.get(f"{server.url}/ping/{uuid}")
    clock.advance(50)
    requests.get(f"{server.url}/ping/{keeps_pinging}")
    fixture.wait_for_tick_at(clock.now)
    assert server.stop() == 0

    clock.advance(600)  # ten minutes with the service stopped: every deadline passed
    server = ServerProcess(env).start()
    try:
        requests.get(f"{server.url}/ping/{keeps_pinging}")  # it kept trying; now it gets through
        fixture.wait_for_tick_at(clock.now)
        assert fixture.count(select(func.count(Alert.id))) == 0  # nothing queued, none to send
        clock.advance(38)  # T0+688: the stopped one is late, inside its grace after restart
        fixture.wait_for_tick_at(clock.now)
        assert fixture.count(select(func.count(Alert.id))) == 0
        statuses = {app["name"]: app["status"] for app in api.get(
            server.url + "/api/v1/applications").json()["items"]}
        assert statuses == {"keeps-pinging": "up", "really-stopped": "late"}
        clock.advance(3)  # T0+691: past its full grace after the gap
        deadline = time.monotonic() + 10
        while not sink.received and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        assert server.stop() == 0
    assert [(r["json"]["event"], r["json"]["application"]["name"]) for r in sink.received] == [
        ("application.down", "really-stopped")]


def _pinger(url: str, uuid: str, name: str, accepted: list, refused: list, stop: threading.Event):
    """Pings until stopped; keeps what was accepted and every answer that was not a success."""
    session, sent = requests.Session(), 0
    while not stop.is_set():
        message = f"{name}-{sent}"
        sent += 1
        try:
            response = session.post(f"{url}/ping/{uuid}", data=message, timeout=10)
        except requests.ConnectionError:
            time.sleep(0.02)  # the server is gone or not yet listening
            continue
        if response.status_code == 200:
            accepted.append(message)
        else:
            refused.append((response.status_code, response.text))
        time.sleep(0.01)


def test_sigterm_under_load_finishes_in_flight_requests_and_loses_nothing(fixture):
    server = ServerProcess(fixture.env(), workers=2).start()
    api = _api(server.url, fixture.key)
    uuids = [api.post(server.url + "/api/v1/applications",
                      json={"name": f"job-{n}", "period_seconds": 3600}).json()["uuid"]
             for n in range(4)]
    accepted, refused, stop = [], [], threading.Event()
    clients = [threading.Thread(target=_pinger, args=(server.url, uuid, f"c{n}", accepted,
                                                      refused, stop))
               for n, uuid in enumerate(uuids)]
    for thread in clients:
        thread.start()
    time.sleep(1.5)
    accepted_before_stop = len(accepted)
    exit_code = server.stop()  # SIGTERM while the clients keep sending
    stop.set()
    for thread in clients:
        thread.join()
    stored = fixture.count(select(func.count(Heartbeat.id)))
    messages = fixture.stored_messages()
    assert exit_code == 0, server.stderr_tail()
    assert accepted_before_stop > 20
    assert refused == []  # no request was cut short with an error while shutting down
    assert sorted(messages) == sorted(accepted) and stored == len(accepted)


def test_sigterm_while_the_database_is_down_keeps_the_spool_for_the_next_start(fixture):
    target = make_url(TEST_DATABASE_URL)
    proxy = ChaosProxy(target.host or "127.0.0.1", target.port or 5432)
    env = fixture.env(DATABASE_URL=_through(proxy, fixture.url), MONITOR_INTERVAL_SECONDS="0.3")
    server = ServerProcess(env).start()
    try:
        api = _api(server.url, fixture.key)
        uuid = api.post(server.url + "/api/v1/applications",
                        json={"name": "job", "period_seconds": 3600}).json()["uuid"]
        proxy.cut()
        accepted = []
        for n in range(30):
            response = requests.post(f"{server.url}/ping/{uuid}", data=f"beat-{n}", timeout=10)
            assert response.status_code == 200, response.text
            accepted.append(f"beat-{n}")
        assert server.stop() == 0, server.stderr_tail()  # stops promptly, database or not
        assert fixture.count(select(func.count(Heartbeat.id))) == 0
        proxy.restore()
        server = ServerProcess(env).start()  # its monitor replays the spool before judging
        fixture.wait_for_heartbeats(len(accepted), 20)
    finally:
        exit_code = server.stop()
        proxy.close()
    messages = fixture.stored_messages()
    assert exit_code == 0
    assert sorted(messages) == sorted(accepted)


def test_dropped_connections_are_a_blip_not_an_outage(fixture):
    target = make_url(TEST_DATABASE_URL)
    proxy = ChaosProxy(target.host or "127.0.0.1", target.port or 5432)
    server = ServerProcess(fixture.env(DATABASE_URL=_through(proxy, fixture.url))).start()
    try:
        api = _api(server.url, fixture.key)
        uuid = api.post(server.url + "/api/v1/applications",
                        json={"name": "job", "period_seconds": 3600}).json()["uuid"]
        for round_number in range(3):
            assert requests.get(f"{server.url}/ping/{uuid}").status_code == 200
            proxy.drop_connections()  # every pooled connection dies; new ones still work
            assert requests.post(f"{server.url}/ping/{uuid}", data=f"after-{round_number}")\
                .status_code == 200
            assert api.get(server.url + "/api/v1/applications").status_code == 200
        dependencies = requests.get(server.url + "/health/dependencies").json()["dependencies"]
        spool = next(entry for entry in dependencies if entry["name"] == "spool")
    finally:
        exit_code = server.stop()
        proxy.close()
    assert exit_code == 0, server.stderr_tail()
    assert spool["depth"]["heartbeats_bytes"] == 0  # stored directly, nothing spooled
    assert fixture.count(select(func.count(Heartbeat.id))) == 6
