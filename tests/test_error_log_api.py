"""§4 errors: operators read, filter, resolve, count and export the error log."""
from __future__ import annotations

import csv
import datetime as dt
import io

from sqlalchemy import select

from database import db
from models import ErrorLog
from monitoring.error_tracking import prune_resolved_errors
from tests.conftest import Client, make_key
from tests.factories import make_error
from tests.helpers import assert_envelope


def test_list_shows_newest_first_without_stack_traces(app, api, clock):
    older = make_error(app, clock.now(), "ValueError")
    newer = make_error(app, clock.advance(seconds=60), "KeyError")
    page = api.get("/api/v1/errors").json()
    assert [item["id"] for item in page["items"]] == [newer, older]
    assert page["next_cursor"] is None
    assert "stack_trace" not in page["items"][0]
    assert page["items"][0]["error_type"] == "KeyError"
    assert page["items"][0]["last_seen_at"] == "2030-01-01T00:01:00Z"


def test_list_filters_by_type_resolution_and_time(app, api, clock):
    start = clock.now()
    early = make_error(app, start, "ValueError")
    resolved = make_error(app, start + dt.timedelta(hours=1), "ValueError",
                          resolved_at=start + dt.timedelta(hours=2))
    late = make_error(app, start + dt.timedelta(hours=3), "KeyError")

    def ids(query):
        return sorted(item["id"] for item in api.get(f"/api/v1/errors{query}").json()["items"])

    assert ids("?error_type=ValueError") == [early, resolved]
    assert ids("?resolved=false") == [early, late]
    assert ids("?resolved=true") == [resolved]
    assert ids("?since=2030-01-01T00:30:00Z") == [resolved, late]
    assert ids("?until=2030-01-01T02:00:00Z") == [early, resolved]
    assert ids("?since=2030-01-01T00:30:00Z&until=2030-01-01T02:00:00Z&resolved=true") == [
        resolved]
    assert_envelope(api.get("/api/v1/errors?since=yesterday"), 422, "VALIDATION_ERROR")


def test_list_pages_through_every_record_once(app, api, clock):
    created = [make_error(app, clock.advance(seconds=1), message=f"n{n}") for n in range(5)]
    seen, cursor = [], None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(f"/api/v1/errors{query}").json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(created))


def test_get_one_includes_its_stack_trace(app, api, clock):
    error_id = make_error(app, clock.now(), "ZeroDivisionError", message="division by zero")
    body = api.get(f"/api/v1/errors/{error_id}").json()
    assert body["id"] == error_id
    assert body["stack_trace"].startswith("Traceback")
    assert "ZeroDivisionError: division by zero" in body["stack_trace"]


def test_unknown_error_answers_error_not_found(api):
    error = assert_envelope(api.get("/api/v1/errors/999"), 404, "ERROR_NOT_FOUND")
    assert "999" in error["details"]
    assert_envelope(api.post("/api/v1/errors/999/resolve"), 404, "ERROR_NOT_FOUND")


def test_resolve_marks_the_record_resolved_once(app, api, clock):
    error_id = make_error(app, clock.now())
    clock.advance(minutes=5)
    body = api.post(f"/api/v1/errors/{error_id}/resolve").json()
    assert body["resolved"] is True
    assert body["resolved_at"] == "2030-01-01T00:05:00Z"
    clock.advance(minutes=5)
    again = api.post(f"/api/v1/errors/{error_id}/resolve").json()
    assert again["resolved_at"] == "2030-01-01T00:05:00Z"
    assert [item["id"] for item in api.get("/api/v1/errors?resolved=false").json()["items"]] == []


def test_errors_api_needs_a_key_and_read_only_keys_only_read(app, server, anonymous, clock):
    error_id = make_error(app, clock.now())
    assert_envelope(anonymous.get("/api/v1/errors"), 401, "UNAUTHORIZED")
    assert_envelope(anonymous.get("/api/v1/errors/stats"), 401, "UNAUTHORIZED")
    reader = Client(server.url, make_key(app, "board", read_only=True))
    assert reader.get(f"/api/v1/errors/{error_id}").status_code == 200
    assert_envelope(reader.post(f"/api/v1/errors/{error_id}/resolve"), 403, "FORBIDDEN")


def test_stats_count_totals_unresolved_types_and_last_day(app, api, clock):
    start = clock.now()
    make_error(app, start, "ValueError", count=3)
    make_error(app, start + dt.timedelta(hours=30), "ValueError",
               resolved_at=start + dt.timedelta(hours=31))
    make_error(app, start + dt.timedelta(hours=40), "KeyError", count=2)
    clock.set(start + dt.timedelta(hours=48))
    stats = api.get("/api/v1/errors/stats").json()
    assert stats["total"] == 3
    assert stats["occurrences"] == 6
    assert stats["unresolved"] == 2
    assert stats["last_24h"] == 2
    assert stats["by_type"] == {"ValueError": 2, "KeyError": 1}
    assert stats["error_rate"]["window_seconds"] == 300
    assert stats["error_rate"]["high"] is False


def test_csv_export_has_one_row_per_record_and_defuses_formulas(app, api, clock):
    make_error(app, clock.now(), "ValueError", message="=HYPERLINK(\"http://evil\")")
    make_error(app, clock.advance(seconds=1), "KeyError", message="plain, with comma")
    response = api.get("/api/v1/errors?format=csv&error_type=ValueError")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 1
    assert rows[0]["error_type"] == "ValueError"
    assert rows[0]["error_message"] == "'=HYPERLINK(\"http://evil\")"
    assert rows[0]["timestamp"] == "2030-01-01T00:00:00Z"
    assert "stack_trace" not in rows[0]
    everything = list(csv.DictReader(io.StringIO(api.get("/api/v1/errors?format=csv").text)))
    assert [row["error_message"] for row in everything] == [
        "plain, with comma", "'=HYPERLINK(\"http://evil\")"]


def test_resolved_errors_are_pruned_after_the_retention(app, clock):
    start = clock.now()
    old_resolved = make_error(app, start, "A", resolved_at=start)
    recent_resolved = make_error(app, start, "B", resolved_at=start + dt.timedelta(days=20))
    unresolved = make_error(app, start, "C")
    with app.app_context():
        assert prune_resolved_errors(start + dt.timedelta(days=30)) == 0
        assert prune_resolved_errors(start + dt.timedelta(days=30, seconds=1)) == 1
        remaining = sorted(db.session.execute(select(ErrorLog.id)).scalars())
        assert remaining == sorted([recent_resolved, unresolved])
        assert old_resolved not in remaining
        assert prune_resolved_errors(start + dt.timedelta(days=400)) == 1
        assert db.session.execute(select(ErrorLog.id)).scalars().all() == [unresolved]
