"""§6.6: the spool keeps every heartbeat it answers for, whole, and refuses the rest with 503:
on a real, tiny file system that fills up, under its size cap, and across failed replays."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app import create_app
from database import db
from models import Application, Heartbeat, Incident
from spool import Spool, SpoolFull
from tests.conftest import TEST_DATABASE_URL, LiveServer, _truncate_postgres, close_app, make_key
from tests.faults import ChaosProxy
from tests.helpers import assert_envelope


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs (the tests run as root), unmounted afterwards."""
    mount_point = tmp_path / "tiny-disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
                   check=True)
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def _fill(directory, name="filler") -> None:
    """Take every free block of the file system."""
    fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while os.write(fd, b"x" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def _lines(path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_a_record_the_full_disk_takes_only_in_part_is_cut_back_and_refused(tiny_disk):
    spool = Spool(str(tiny_disk / "spool"), "heartbeats")
    spool.append({"message": "first"})
    _fill(tiny_disk)  # the spool file keeps the rest of its one block
    with pytest.raises(SpoolFull):
        spool.append({"message": "x" * 6000})  # a short write, then ENOSPC
    assert _lines(spool.path) == [b'{"message":"first"}\n']
    spool.append({"message": "second"})  # what still fits in the block is taken
    assert [json.loads(line) for line in _lines(spool.path)] == [{"message": "first"},
                                                                 {"message": "second"}]
    assert spool.room_bytes() < 4096


def test_a_torn_last_line_does_not_swallow_the_next_record(tmp_path):
    spool = Spool(str(tmp_path / "spool"), "heartbeats")
    spool.append({"message": "first"})
    with spool.path.open("ab") as handle:
        handle.write(b'{"message":"killed mid-app')  # a writer SIGKILLed mid-append
    spool.append({"message": "second"})
    replayed = []
    spool.replay(replayed.extend)
    assert replayed == [{"message": "first"}, {"message": "second"}]


def test_the_size_cap_counts_every_file_and_failed_replays_claim_no_new_ones(tmp_path):
    spool = Spool(str(tmp_path / "spool"), "heartbeats", max_bytes=20_000)
    record = {"message": "m" * 200}

    def database_down(records):
        raise ConnectionError("database still down")

    appended = 0
    for attempt in range(20):  # a monitor tick's replay, between bursts of heartbeats
        for _ in range(50):
            try:
                spool.append(record)
                appended += 1
            except SpoolFull:
                break
        with pytest.raises(ConnectionError):
            spool.replay(database_down)
        assert len(list(spool.directory.glob("*.replaying"))) <= 1
        assert spool.depth_bytes() <= 20_000
    assert appended == 20_000 // len(json.dumps(record, separators=(",", ":")).encode() + b"\n")
    replayed = []
    spool.replay(replayed.extend)
    assert len(replayed) == appended and spool.is_empty()


def test_each_append_is_fsynced_before_the_heartbeat_is_answered(app, anonymous, application,
                                                                 runtime, monkeypatch):
    """What the kernel is asked, in order, for the spool file: every answered heartbeat's
    write is followed by an fsync of that file before the answer leaves. (It proves the
    service asks for durability before answering, not that the disk keeps its word.)"""
    events = []
    write, fsync = os.write, os.fsync

    def spool_inode(fd):
        try:
            return os.fstat(fd).st_ino
        except OSError:
            return None

    def recording_write(fd, data):
        count = write(fd, data)
        events.append(("write", spool_inode(fd), bytes(data[:count])))
        return count

    def recording_fsync(fd):
        fsync(fd)
        events.append(("fsync", spool_inode(fd), b""))

    runtime.db_breaker.record_failure(RuntimeError("database down"))  # straight to the spool
    monkeypatch.setattr(os, "write", recording_write)
    monkeypatch.setattr(os, "fsync", recording_fsync)
    for n in range(5):
        response = anonymous.post(f"/ping/{application['uuid']}", data=f"beat-{n}")
        assert response.status_code == 200
        inode = runtime.heartbeat_spool.path.stat().st_ino
        mine = [(kind, data) for kind, event_inode, data in events if event_inode == inode]
        written = [index for index, (kind, data) in enumerate(mine)
                   if kind == "write" and f"beat-{n}".encode() in data]
        assert written, "the heartbeat was not written to the spool"
        assert ("fsync", b"") in mine[written[-1] + 1:], f"beat-{n} answered before an fsync"
    monkeypatch.undo()
    assert sum(1 for _ in runtime.heartbeat_spool.path.open()) == 5


@pytest.fixture
def behind_proxy(request, clock):
    """serve(spool_dir): the app on PostgreSQL through a proxy the test cuts, served over
    HTTP, with an API client and one application; returns (app, live, proxy, api, uuid)."""
    url = request.getfixturevalue("postgres_url")
    _truncate_postgres(url)
    target = make_url(TEST_DATABASE_URL)
    proxy = ChaosProxy(target.host or "127.0.0.1", target.port or 5432)
    through = make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False)
    started = []

    def serve(spool_dir):
        app = create_app({"DATABASE_URL": through, "MONITOR_ENABLED": False, "CLOCK": clock,
                          "SPOOL_DIR": str(spool_dir), "LOG_FORMAT": "text",
                          "LOG_LEVEL": "CRITICAL"})
        live = LiveServer(app).start()
        started.append((app, live))
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {make_key(app)}"
        uuid = api.post(live.url + "/api/v1/applications",
                        json={"name": "job", "period_seconds": 3600}).json()["uuid"]
        return app, live, proxy, api, uuid

    yield serve
    for app, live in started:
        live.stop()
        close_app(app)
    proxy.close()


@pytest.mark.slow
def test_a_full_spool_disk_answers_503_and_every_heartbeat_answered_is_kept_whole(
        behind_proxy, tiny_disk):
    app, live, proxy, _, uuid = behind_proxy(tiny_disk / "spool")
    proxy.cut()
    client = requests.Session()
    accepted, refused, other = [], 0, []
    for n in range(1200):
        message = f"beat-{n}"
        if n % 3:
            response = client.post(f"{live.url}/ping/{uuid}", data=message, timeout=10)
        else:
            response = client.post(f"{live.url}/api/v1/applications/{uuid}/heartbeats",
                                   json={"message": message}, timeout=10)
        if response.status_code in (200, 202):
            accepted.append(message)
        elif response.status_code == 503:
            assert_envelope(response, 503, "SERVICE_UNAVAILABLE")
            assert int(response.headers["Retry-After"]) > 0
            refused += 1
        else:
            other.append((response.status_code, response.text[:200]))
    print(f"\nfull spool disk: {len(accepted)} heartbeats accepted, {refused} answered 503")
    assert other == []
    assert refused > 100 and len(accepted) > 300  # the disk filled up part way
    health = client.get(live.url + "/health", timeout=10)
    assert health.status_code == 503 and health.json()["status"] == "down", health.text

    spool = app.extensions["hbmon"].heartbeat_spool
    spooled = [json.loads(line)["message"] for path in spool.pending_files()
               for line in path.read_bytes().splitlines()]
    assert spooled == accepted  # whole, in order, and nothing that was refused

    proxy.restore()
    app.extensions["hbmon"].monitor.tick()  # replays the spool first
    with app.app_context():
        stored = db.session.execute(select(Heartbeat.message)).scalars().all()
        db.session.remove()
    assert sorted(stored) == sorted(accepted)
    assert client.get(live.url + "/health", timeout=10).json()["status"] != "down"


@pytest.mark.slow
def test_heartbeats_spooled_during_a_cut_replay_in_order(behind_proxy, tmp_path, clock):
    """ok, fail, ok while the database is cut: after it is back, one incident, opened by the
    failure and resolved by the last success, exactly as if they had arrived live."""
    app, live, proxy, _, uuid = behind_proxy(tmp_path / "spool")
    proxy.cut()
    moments = []
    for signal in ("", "/fail", ""):
        clock.advance(seconds=60)
        moments.append(clock.now())
        assert requests.get(f"{live.url}/ping/{uuid}{signal}", timeout=10).status_code == 200
    assert app.extensions["hbmon"].heartbeat_spool.depth_bytes() > 0
    proxy.restore()
    app.extensions["hbmon"].monitor.tick()
    with app.app_context():
        incidents = db.session.execute(select(Incident.reason, Incident.started_at,
                                              Incident.resolved_at)).all()
        kinds = db.session.execute(select(Heartbeat.kind).order_by(Heartbeat.received_at)
                                   ).scalars().all()
        status = db.session.execute(select(Application.status)).scalar_one()
        db.session.remove()
    assert kinds == ["ok", "fail", "ok"]
    assert [tuple(row) for row in incidents] == [("failed", moments[1], moments[2])]
    assert status == "up"


@pytest.mark.slow
def test_slug_pings_spooled_during_a_cut_replay_in_order(behind_proxy, tmp_path, clock):
    """A slug ping takes the UUID ping's durable path: while the database is cut, it is spooled
    and answered, whether the process knew its route or not, and replayed like any heartbeat;
    one naming no application is dropped on replay, as an unknown UUID's is."""
    app, live, proxy, api, uuid = behind_proxy(tmp_path / "spool")
    assert api.patch(f"{live.url}/api/v1/applications/{uuid}",
                     json={"slug": "job"}).status_code == 200
    other = api.post(f"{live.url}/api/v1/applications",
                     json={"name": "other", "slug": "other", "period_seconds": 3600}).json()
    result = app.test_cli_runner().invoke(args=["ping-key", "create", "crontabs"])
    key = result.output.strip().splitlines()[-1]
    assert requests.get(f"{live.url}/ping/{key}/job/start", timeout=10).status_code == 200
    proxy.cut()
    moments = []
    for signal in ("", "/fail", ""):
        clock.advance(seconds=60)
        moments.append(clock.now())
        response = requests.post(f"{live.url}/ping/{key}/job{signal}", timeout=10)
        assert response.status_code == 200 and response.text == "OK"
    for path in (f"{key}/other/log", f"{key}/missing", f"{key}x/other"):  # never looked up
        response = requests.post(f"{live.url}/ping/{path}", data=path, timeout=10)
        assert response.status_code == 200 and response.text == "OK"
    assert_envelope(requests.get(f"{live.url}/ping/{key}/new", params={"create": "1"},
                                 timeout=10), 503, "DATABASE_UNAVAILABLE")
    assert app.extensions["hbmon"].heartbeat_spool.depth_bytes() > 0
    proxy.restore()
    app.extensions["hbmon"].monitor.tick()
    with app.app_context():
        incidents = db.session.execute(select(Incident.reason, Incident.started_at,
                                              Incident.resolved_at)).all()
        stored = db.session.execute(select(Application.uuid, Heartbeat.kind, Heartbeat.method,
                                           Heartbeat.message).join(Heartbeat.application)
                                    .order_by(Heartbeat.received_at, Heartbeat.id)).all()
        status = db.session.execute(select(Application.status)
                                    .where(Application.uuid == uuid)).scalar_one()
        db.session.remove()
    assert [tuple(row) for row in stored] == [
        (uuid, "start", "GET", ""), (uuid, "ok", "POST", ""), (uuid, "fail", "POST", ""),
        (uuid, "ok", "POST", ""), (other["uuid"], "log", "POST", f"{key}/other/log")]
    assert [tuple(row) for row in incidents] == [("failed", moments[1], moments[2])]
    assert status == "up"
