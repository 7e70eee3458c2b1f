"""§3: the Healthchecks-compatible ping URLs and the JSON heartbeat form."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
from flask import request, request_started
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from database import db
from ingest.replay import replay_heartbeats
from ingest.signals import Signal
from ingest.writer import HeartbeatWriter
from models import Heartbeat
from tests.helpers import assert_envelope


def _app(api, uuid_):
    return api.get(f"/api/v1/applications/{uuid_}").json()


def _heartbeats(api, uuid_):
    return api.get(f"/api/v1/applications/{uuid_}/heartbeats").json()["items"]


@pytest.mark.parametrize("method", ["GET", "POST", "HEAD"])
def test_ping_answers_ok_and_marks_application_up(api, anonymous, application, clock, method):
    response = anonymous.request(method, f"/ping/{application['uuid']}")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    if method != "HEAD":
        assert response.text == "OK"
    state = _app(api, application["uuid"])
    assert state["status"] == "up"
    assert state["last_heartbeat_at"] == "2030-01-01T00:00:00Z"
    assert state["next_deadline_at"] == "2030-01-01T01:00:00Z"  # period 3600 s


def test_ping_body_is_kept_as_message_and_truncated_beyond_100_kb(api, anonymous, application):
    anonymous.post(f"/ping/{application['uuid']}", data="backup done: 42 files")
    anonymous.post(f"/ping/{application['uuid']}/log", data="x" * (150 * 1024))
    newest, oldest = _heartbeats(api, application["uuid"])[:2]
    assert oldest["message"] == "backup done: 42 files"
    assert newest["kind"] == "log" and len(newest["message"]) == 100 * 1024


def test_ping_body_and_user_agent_with_nul_characters_are_stored(api, anonymous, application):
    # PostgreSQL cannot store NUL: the heartbeat was spooled and then blocked the replay.
    response = anonymous.post(f"/ping/{application['uuid']}/log", data=b"rows\x00 42",
                              headers={"User-Agent": "cron\x00job"})
    assert response.status_code == 200
    heartbeats = _heartbeats(api, application["uuid"])
    assert [h["message"] for h in heartbeats] == ["rows\ufffd 42"]


@pytest.fixture
def app_config(app_config) -> dict:
    # The database is up: an accepted heartbeat must be stored, never left in the spool.
    return {**app_config, "INGEST_TIMEOUT_SECONDS": 30}


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=64) | st.text(st.characters(exclude_categories=()), max_size=64)
       .map(lambda text: text.encode("utf-8", errors="surrogatepass")))
def test_any_ping_body_is_stored_as_the_message(anonymous, application, runtime, body):
    response = anonymous.post(f"/ping/{application['uuid']}/log", data=body)
    assert response.status_code == 200 and response.text == "OK"
    assert runtime.heartbeat_spool.is_empty(), "the database refused the heartbeat"


def test_start_then_success_with_rid_measures_run_duration(api, anonymous, application, clock):
    rid = str(uuid.uuid4())
    anonymous.get(f"/ping/{application['uuid']}/start?rid={rid}")
    clock.advance(seconds=95.5)
    anonymous.get(f"/ping/{application['uuid']}/0?rid={rid}")
    success = _heartbeats(api, application["uuid"])[0]
    assert success["kind"] == "ok" and success["exit_code"] == 0
    assert success["duration_ms"] == 95500
    assert success["rid"] == rid


def test_end_with_other_rid_has_no_duration(api, anonymous, application, clock):
    anonymous.get(f"/ping/{application['uuid']}/start?rid={uuid.uuid4()}")
    clock.advance(seconds=10)
    anonymous.get(f"/ping/{application['uuid']}?rid={uuid.uuid4()}")
    assert _heartbeats(api, application["uuid"])[0]["duration_ms"] is None


def test_fail_signal_marks_application_down(api, anonymous, application):
    anonymous.get(f"/ping/{application['uuid']}")
    assert anonymous.get(f"/ping/{application['uuid']}/fail").text == "OK"
    assert _app(api, application["uuid"])["status"] == "down"


def test_nonzero_exit_status_is_a_failure_and_zero_a_success(api, anonymous, application):
    anonymous.get(f"/ping/{application['uuid']}/3")
    assert _app(api, application["uuid"])["status"] == "down"
    anonymous.get(f"/ping/{application['uuid']}/0")
    assert _app(api, application["uuid"])["status"] == "up"
    kinds = [(h["kind"], h["exit_code"]) for h in _heartbeats(api, application["uuid"])]
    assert kinds == [("ok", 0), ("fail", 3)]


def test_exit_status_over_255_is_a_validation_error(anonymous, application):
    assert_envelope(anonymous.get(f"/ping/{application['uuid']}/256"), 422, "VALIDATION_ERROR")


@pytest.mark.parametrize("signal", ["\u00b2", "\u0663", "nope"])  # superscript 2, Arabic 3
def test_a_signal_that_is_not_an_ascii_exit_status_is_not_found(anonymous, application, signal):
    assert_envelope(anonymous.get(f"/ping/{application['uuid']}/{signal}"), 404, "NOT_FOUND")


def test_log_records_without_changing_status(api, anonymous, application):
    anonymous.post(f"/ping/{application['uuid']}/log", data="just saying")
    state = _app(api, application["uuid"])
    assert state["status"] == "new" and state["last_heartbeat_at"] is None
    assert _heartbeats(api, application["uuid"])[0]["message"] == "just saying"


def test_failure_threshold_counts_consecutive_failures(api, anonymous):
    created = api.post("/api/v1/applications",
                       json={"name": "flaky", "failure_threshold": 3}).json()
    for expected in ("up", "up", "down"):
        anonymous.get(f"/ping/{created['uuid']}/fail")
        assert _app(api, created["uuid"])["status"] == expected


def test_json_heartbeat_is_validated_and_answers_202(api, anonymous, application):
    response = anonymous.post(f"/api/v1/applications/{application['uuid']}/heartbeats",
                              json={"status": "ok", "message": "fine", "duration_ms": 1200,
                                    "exit_code": 0, "metadata": {"rows": 10}})
    assert response.status_code == 202
    body = response.json()
    assert body["kind"] == "ok" and body["duration_ms"] == 1200
    assert body["metadata"] == {"rows": 10}
    assert body["application_uuid"] == application["uuid"]
    assert _app(api, application["uuid"])["status"] == "up"


@pytest.mark.parametrize("exit_code, kind", [(0, "ok"), (3, "fail")])
def test_json_heartbeat_with_only_an_exit_code_takes_its_status_from_it(anonymous, application,
                                                                       exit_code, kind):
    response = anonymous.post(f"/api/v1/applications/{application['uuid']}/heartbeats",
                              json={"exit_code": exit_code})
    assert response.status_code == 202 and response.json()["kind"] == kind


def test_json_heartbeat_without_body_is_a_success(api, anonymous, application):
    response = anonymous.post(f"/api/v1/applications/{application['uuid']}/heartbeats")
    assert response.status_code == 202 and response.json()["kind"] == "ok"


@pytest.mark.parametrize("body, field", [
    ({"status": "great"}, "status"),
    ({"message": "x" * 10001}, "message"),
    ({"duration_ms": -1}, "duration_ms"),
    ({"exit_code": 256}, "exit_code"),
    ({"metadata": {"blob": "x" * 9000}}, "metadata"),
    ({"metadata": []}, "metadata"),
    ({"surprise": 1}, "surprise"),
    ({"message": "a\x00b"}, "message"),
    ({"metadata": {"host\x00": "db1"}}, "metadata"),
    ({"message": "lone \ud800"}, "message"),
    ({"metadata": {"\udfff": 1}}, "metadata"),
    ({"status": "ok", "exit_code": 3}, "exit_code"),
    ({"status": "fail", "exit_code": 0}, "exit_code"),
])
def test_json_heartbeat_rejects_invalid_fields(anonymous, application, body, field):
    response = anonymous.post(f"/api/v1/applications/{application['uuid']}/heartbeats",
                              json=body)
    error = assert_envelope(response, 422, "VALIDATION_ERROR")
    assert list(error["details"]) == [field]


def test_paused_application_accepts_heartbeats_and_resumes(api, anonymous, application):
    api.post(f"/api/v1/applications/{application['uuid']}/pause")
    assert _app(api, application["uuid"])["status"] == "paused"
    assert anonymous.get(f"/ping/{application['uuid']}").status_code == 200
    assert _app(api, application["uuid"])["status"] == "up"


def test_heartbeats_are_listed_newest_first_across_pages(api, anonymous, application, clock):
    for n in range(5):
        anonymous.post(f"/ping/{application['uuid']}/log", data=f"beat {n}")
        clock.advance(seconds=1)
    seen, cursor = [], None
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        page = api.get(f"/api/v1/applications/{application['uuid']}/heartbeats{query}").json()
        seen += [h["message"] for h in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"beat {n}" for n in reversed(range(5))]


def test_a_batch_wakes_its_requests_in_turn_passing_by_one_that_gave_up(app, application,
                                                                        runtime, clock):
    """The writer wakes a batch's first request and each wakes the next; one that stopped
    waiting (and spooled) must not leave the ones after it waiting too."""

    entered, gate = threading.Event(), threading.Event()

    class GatedWriter(HeartbeatWriter):
        def store_batch(self, items, replay=False):
            entered.set()
            assert gate.wait(10)
            return super().store_batch(items, replay)

    writer = GatedWriter(app, runtime.heartbeat_spool, runtime.db_breaker, timeout_seconds=1)
    answers = {}

    def send(name):
        with app.app_context():
            signal = Signal(kind="ok", received_at=clock.now(), message=name)
            answers[name] = writer.accept(application["uuid"], signal).spooled

    def start(name):
        thread = threading.Thread(target=send, args=(name,))
        thread.start()
        return thread

    threads = [start("first")]  # the writer holds it at the gate
    assert entered.wait(10)
    gives_up = start("gives-up")
    gives_up.join()  # its second passed (and the first's): both spooled their heartbeats
    threads += [start("second"), start("third")]
    polled_until = time.monotonic() + 10  # both queued behind the one that gave up
    while len(writer._queue) < 3 and time.monotonic() < polled_until:
        time.sleep(0.005)
    assert len(writer._queue) == 3
    gate.set()  # [first], then [gives-up, second, third] in one batch
    for thread in threads:
        thread.join()
    writer.stop()
    assert answers == {"first": True, "gives-up": True, "second": False, "third": False}
    with app.app_context():
        messages = db.session.execute(select(Heartbeat.message)).scalars().all()
    assert sorted(messages) == ["first", "gives-up", "second", "third"]  # and written


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_heartbeat_the_database_refuses_fails_alone_and_is_not_spooled(app, application,
                                                                         runtime, clock):
    """PostgreSQL refuses NUL in text: the bad heartbeat gets an error, its batch mates are
    stored, and nothing lands in the spool that could never be replayed."""
    uuid = application["uuid"]
    good = [Signal(kind="ok", received_at=clock.now(), message=f"good-{n}") for n in range(3)]
    bad = Signal(kind="ok", received_at=clock.now(), message="bad\x00")
    answers = {}

    def send(name, signal):
        with app.app_context():
            try:
                answers[name] = runtime.writer.accept(uuid, signal).spooled
            except Exception as error:  # noqa: BLE001 (the answer under test)
                answers[name] = type(error).__name__

    threads = [threading.Thread(target=send, args=(f"good-{n}", signal))
               for n, signal in enumerate(good)] + [threading.Thread(target=send,
                                                                     args=("bad", bad))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers["bad"] not in (True, False)  # an error, neither stored nor spooled
    assert [answers[f"good-{n}"] for n in range(3)] == [False, False, False]
    assert runtime.heartbeat_spool.is_empty()
    with app.app_context():
        messages = db.session.execute(select(Heartbeat.message)).scalars().all()
    assert sorted(m for m in messages if m.startswith("good")) == ["good-0", "good-1", "good-2"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_spooled_record_the_database_refuses_is_set_aside_not_blocking(app, application,
                                                                         runtime, clock):
    uuid = application["uuid"]
    for n, message in enumerate(["before", "poison\x00", "after"]):
        runtime.writer.spool_heartbeat(uuid, Signal(kind="ok", received_at=clock.now(),
                                                    message=message))
    with app.app_context():
        assert replay_heartbeats(runtime.heartbeat_spool) == 3
        messages = db.session.execute(select(Heartbeat.message)).scalars().all()
    assert {"before", "after"} <= set(messages) and "poison\x00" not in messages
    assert runtime.heartbeat_spool.is_empty()
    rejected = (runtime.heartbeat_spool.directory / "heartbeats.rejected").read_text()
    assert '"poison\\u0000"' in rejected


# --- The fast path (ping_fast_path.py) and the view answer alike ---------------------------

def _served_by_flask(app):
    """Names of the requests that went through Flask's request machinery."""
    seen = []

    def record(sender, **extra):
        seen.append(f"{request.method} {request.path}")
    request_started.connect(record, app, weak=False)
    return seen


def test_a_bodyless_ping_skips_flask_and_answers_like_the_view(app, anonymous, application):
    uuid_ = application["uuid"]
    served_by_flask = _served_by_flask(app)
    fast = anonymous.get(f"/ping/{uuid_}/start", headers={"X-Request-ID": "job-42.run"})
    viewed = anonymous.post(f"/ping/{uuid_}", data="with a body")
    assert (fast.status_code, fast.text) == (viewed.status_code, viewed.text) == (200, "OK")
    assert served_by_flask == [f"POST /ping/{uuid_}"]
    ignored = {"date", "server", "x-request-id", "connection"}
    assert {name.lower() for name in fast.headers} - ignored == \
        {name.lower() for name in viewed.headers} - ignored
    assert fast.headers["X-Request-ID"] == "job-42.run"
    assert viewed.headers["X-Request-ID"].startswith("req_")
    assert fast.headers["Content-Security-Policy"] == viewed.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path, status, code", [
    ("/ping/not-a-uuid", 400, "MALFORMED_REQUEST"),
    ("/ping/{uuid}/256", 422, "VALIDATION_ERROR"),
])
def test_a_ping_the_fast_path_cannot_take_is_answered_by_the_view(app, anonymous, application,
                                                                  path, status, code):
    served_by_flask = _served_by_flask(app)
    url = path.format(uuid=application["uuid"])
    assert_envelope(anonymous.get(url), status, code)
    assert served_by_flask == [f"GET {url}"]


def test_a_ping_the_fast_path_refuses_is_answered_like_any_error(app, anonymous, application):
    served_by_flask = _served_by_flask(app)
    unknown = anonymous.get("/ping/00000000-0000-4000-8000-000000000000",
                            headers={"X-Request-ID": "job-7"})
    error = assert_envelope(unknown, 404, "HEARTBEAT_NOT_FOUND")
    assert error["request_id"] == "job-7"
    known = anonymous.post(f"/ping/{application['uuid']}", data="with a body")
    assert {name.lower() for name in unknown.headers} - {"date", "server", "connection"} >= \
        {name.lower() for name in known.headers} - {"date", "server", "connection",
                                                    "content-length"}
    assert served_by_flask == [f"POST /ping/{application['uuid']}"]  # not the view, no hooks


def test_a_ping_refused_while_the_spool_is_full_gets_the_envelope(app, anonymous, application,
                                                                  runtime):
    runtime.db_breaker.record_failure(RuntimeError("database down"))  # straight to the spool
    runtime.heartbeat_spool.max_bytes = 0
    response = anonymous.get(f"/ping/{application['uuid']}")
    assert_envelope(response, 503, "SERVICE_UNAVAILABLE")
    assert response.headers["Retry-After"] == "5"
