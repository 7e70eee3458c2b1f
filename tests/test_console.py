"""SPEC §10: the operator console's pages and forms, over real HTTP (the browser's own test is
test_console_browser.py). Forms validate with the API's schemas, errors beside their fields;
read-only sessions are offered no control and refused any change."""
from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser

import pytest

from database import db
from delivery import channel_breaker_name
from models import Alert
from tests.console_helpers import console
from tests.factories import make_error
from tests.helpers import assert_envelope

APPLICATION_FORM = {"name": "nightly-backup", "schedule": "period", "period_seconds": "3600",
                    "grace_seconds": "300", "timezone": "UTC", "failure_threshold": "1",
                    "reminder_interval_seconds": "0", "tags": "db nightly"}


@pytest.fixture
def operator(app, server):
    return console(app, server)


@pytest.fixture
def reader(app, server):
    return console(app, server, read_only=True)


def field_error(page: str, field: str) -> str:
    """The error shown beside `field`, or "" if none."""
    found = re.search(rf'id="{re.escape(field)}-error">([^<]*)<', page)
    return found.group(1) if found else ""


def test_create_shows_schema_errors_beside_their_fields(operator, api):
    page = operator.form("/applications/new", {**APPLICATION_FORM, "name": "",
                                               "schedule": "cron", "cron": "61 * * * *",
                                               "grace_seconds": "soon"})
    assert page.status_code == 422
    assert field_error(page.text, "cron")
    assert field_error(page.text, "name")
    assert "Not a valid integer" in field_error(page.text, "grace_seconds")
    assert field_error(page.text, "period_seconds") == ""
    assert 'value="soon"' in page.text  # what was typed is shown again
    assert api.get("/api/v1/applications").json()["items"] == []

    created = operator.form("/applications/new", APPLICATION_FORM, allow_redirects=False)
    assert created.status_code == 302
    [application] = api.get("/api/v1/applications").json()["items"]
    assert created.headers["Location"] == f"/applications/{application['uuid']}"
    assert application["period_seconds"] == 3600 and application["tags"] == ["db", "nightly"]


def test_list_filters_and_searches(operator, api, anonymous):
    for name, tags in (("nightly-backup", ["db"]), ("invoice-run", ["billing"]),
                       ("Backup of mail", ["mail"])):
        api.post("/api/v1/applications", json={"name": name, "tags": tags})
    uuid = api.get("/api/v1/applications").json()["items"][0]["uuid"]
    anonymous.get(f"/ping/{uuid}")

    def names(**params):
        page = operator.get("/applications", params=params).text
        return sorted(re.findall(r'<a href="/applications/[0-9a-f-]{36}">([^<]+)</a>', page))

    assert names() == ["Backup of mail", "invoice-run", "nightly-backup"]
    assert names(q="backup") == ["Backup of mail", "nightly-backup"]
    assert names(tag="billing") == ["invoice-run"]
    assert names(status="up") == ["nightly-backup"]
    assert names(status="up", q="mail") == []
    refused = operator.get("/applications", params={"status": "sideways"})
    assert refused.status_code == 200 and field_error(refused.text, "status")


def test_edit_pause_resume_snooze_delete(operator, api, application):
    uuid = application["uuid"]
    form = operator.get(f"/applications/{uuid}/edit").text
    assert 'value="nightly-backup"' in form and 'value="db nightly"' in form
    bad = operator.form(f"/applications/{uuid}/edit", {**APPLICATION_FORM,
                                                        "period_seconds": "0"})
    assert bad.status_code == 422 and field_error(bad.text, "period_seconds")
    saved = operator.form(f"/applications/{uuid}/edit", {**APPLICATION_FORM, "name": "renamed",
                                                          "schedule": "cron",
                                                          "cron": "0 3 * * *"})
    assert saved.status_code == 200 and "Saved." in saved.text
    state = api.get(f"/api/v1/applications/{uuid}").json()
    assert state["name"] == "renamed" and state["cron"] == "0 3 * * *"
    assert state["period_seconds"] is None

    operator.form(f"/applications/{uuid}/pause")
    assert api.get(f"/api/v1/applications/{uuid}").json()["status"] == "paused"
    operator.form(f"/applications/{uuid}/resume")
    assert api.get(f"/api/v1/applications/{uuid}").json()["status"] == "new"

    snoozed = operator.form(f"/applications/{uuid}/snooze", {"minutes": "60"})
    assert "Snoozed renamed" in snoozed.text and 'id="end-snooze"' in snoozed.text
    assert api.get(f"/api/v1/applications/{uuid}").json()["snoozed_until"]
    operator.form(f"/applications/{uuid}/snooze/end")
    assert api.get(f"/api/v1/applications/{uuid}").json()["snoozed_until"] is None

    confirm = operator.get(f"/applications/{uuid}/delete")
    assert confirm.status_code == 200 and "Delete renamed?" in confirm.text
    assert api.get(f"/api/v1/applications/{uuid}").status_code == 200
    operator.form(f"/applications/{uuid}/delete")
    assert_envelope(api.get(f"/api/v1/applications/{uuid}"), 404, "APPLICATION_NOT_FOUND")


def test_read_only_session_sees_everything_offered_nothing_refused_changes(
        app, reader, operator, api, application, clock):
    uuid = application["uuid"]
    error_id = make_error(app, clock.now())
    pages = ["/", "/applications", f"/applications/{uuid}", "/channels", "/alerts",
             "/incidents", "/maintenance", "/errors", f"/errors/{error_id}"]
    for path in pages:
        page = reader.get(path)
        assert page.status_code == 200, path
        forms = re.findall(r'<form[^>]*method="post"[^>]*action="([^"]+)"', page.text)
        assert forms == ["/logout"], (path, forms)  # signing out is its only control
        assert 'id="read-only"' in page.text
    assert len(re.findall(r'<form[^>]*method="post"', operator.get(
        f"/applications/{uuid}").text)) > 2
    for path in ("/applications/new", f"/applications/{uuid}/edit", "/channels/new"):
        assert_envelope(reader.get(path), 403, "FORBIDDEN")  # pages that are only a form
    for path, data in ((f"/applications/{uuid}/pause", {}), ("/applications/new",
                       APPLICATION_FORM), (f"/errors/{error_id}/resolve", {})):
        assert_envelope(reader.form(path, data), 403, "FORBIDDEN")
    assert api.get(f"/api/v1/applications/{uuid}").json()["status"] == "new"
    assert len(api.get("/api/v1/applications").json()["items"]) == 1


def test_every_change_needs_the_csrf_token(operator, api, application):
    uuid = application["uuid"]
    for token in (None, "forged"):
        data = {} if token is None else {"csrf_token": token}
        assert_envelope(operator.post(f"/applications/{uuid}/pause", data=data), 403,
                        "FORBIDDEN")
    assert api.get(f"/api/v1/applications/{uuid}").json()["status"] == "new"
    assert operator.get(f"/applications/{uuid}", allow_redirects=False).status_code == 200


def test_signed_out_browser_is_sent_to_sign_in_and_refused_changes(anonymous, application):
    page = anonymous.get("/applications", allow_redirects=False)
    assert page.status_code == 302 and page.headers["Location"] == "/login"
    assert_envelope(anonymous.post(f"/applications/{application['uuid']}/pause"), 403,
                    "FORBIDDEN")


def test_application_page_shows_runs_log_bodies_and_timeline(operator, api, anonymous,
                                                             application, clock, runtime):
    uuid = application["uuid"]
    for seconds in (3, 7, 5):
        anonymous.get(f"/ping/{uuid}/start")
        clock.advance(seconds=seconds)
        anonymous.post(f"/ping/{uuid}", data=f"run of {seconds} s")
        clock.advance(minutes=10)
    anonymous.post(f"/ping/{uuid}/fail", data="disk full")
    clock.advance(minutes=1)
    page = operator.get(f"/applications/{uuid}").text
    assert "3.0 s, 7.0 s, 5.0 s" in page
    assert len(re.findall(r'<rect class="bar-ok"', page)) == 3
    assert 'value="http://127.0.0.1' in page and f"/ping/{uuid}/start" in page
    assert "curl -fsS" in page
    bodies = re.findall(rf'href="(/applications/{uuid}/heartbeats/[0-9a-f-]+)"', page)
    assert len(bodies) == 4
    assert "disk full" not in page  # bodies on demand only
    assert "disk full" in operator.get(bodies[0]).text
    states = re.findall(r'data-state="(\w+)"', page)
    assert states[-1] == "down" and "up" in states
    assert re.search(r'data-incident="\d+"', page) and 'id="acknowledge-' in page
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", page)


def test_acknowledge_from_the_page(operator, api, anonymous, application):
    uuid = application["uuid"]
    anonymous.get(f"/ping/{uuid}/fail")
    [incident] = api.get(f"/api/v1/applications/{uuid}/incidents").json()["items"]
    page = operator.form(f"/incidents/{incident['id']}/acknowledge",
                         {"next": f"/applications/{uuid}"})
    assert "acknowledged" in page.text
    state = api.get(f"/api/v1/incidents/{incident['id']}").json()
    assert state["state"] == "acknowledged" and state["acknowledged_by"] == "api-key:operator"


def test_channel_forms_test_send_and_breaker(operator, api, sink):
    bad = operator.form("/channels/new", {"kind": "webhook", "name": "hook", "url": "ftp://x"})
    assert bad.status_code == 422 and field_error(bad.text, "url")
    bad = operator.form("/channels/new", {"kind": "email", "name": "mail",
                                          "addresses": "not-an-address"})
    assert bad.status_code == 422 and "email" in bad.text.lower()
    created = operator.form("/channels/new", {"kind": "webhook", "name": "ops hook",
                                              "url": sink.url, "secret": "s3cret-value",
                                              "headers": "X-Team: ops"}, allow_redirects=False)
    assert created.status_code == 302
    [channel] = api.get("/api/v1/channels").json()["items"]
    assert channel["has_secret"] and channel["headers"] == {"X-Team": "********"}
    listing = operator.get("/channels").text
    assert "ops hook" in listing and "status-closed" in listing
    result = operator.form(f"/channels/{channel['id']}/test")
    assert 'id="test-result"' in result.text and "Test alert delivered" in result.text
    assert len(sink.received) == 1 and sink.received[0]["headers"]["X-Team"] == "ops"
    sink.default = 500
    failed = operator.form(f"/channels/{channel['id']}/test")
    assert "not delivered" in failed.text and "HTTP 500" in failed.text
    saved = operator.form(f"/channels/{channel['id']}", {"name": "renamed hook",
                                                          "url": sink.url})
    assert "Channel saved." in saved.text
    assert api.get(f"/api/v1/channels/{channel['id']}").json()["has_secret"]


def test_alert_history_attempts_and_retry_of_a_dead_alert(app, operator, api, anonymous, sink,
                                                          runtime):
    channel = api.post("/api/v1/channels", json={"name": "hook", "kind": "webhook",
                                                  "url": sink.url}).json()
    application = api.post("/api/v1/applications", json={"name": "job",
                                                           "channels": [channel["id"]]}).json()
    sink.default = 500
    anonymous.get(f"/ping/{application['uuid']}/fail")
    runtime.deliverer.drain()
    [alert] = api.get("/api/v1/alerts").json()["items"]
    with app.app_context():  # as if its age limit had run out
        db.session.get(Alert, alert["id"]).state = "dead"
        db.session.commit()
        db.session.remove()
    listing = operator.get("/alerts", params={"state": "dead"}).text
    assert f'data-alert="{alert["id"]}"' in listing and ">hook<" in listing
    page = operator.get(f"/alerts/{alert['id']}").text
    assert 'id="retry"' in page and "HTTP 500" in page
    sink.default = 200
    retried = operator.form(f"/alerts/{alert['id']}/retry")
    assert "queued again" in retried.text
    assert api.get(f"/api/v1/alerts/{alert['id']}").json()["state"] == "pending"
    again = operator.form(f"/alerts/{alert['id']}/retry")
    assert "Not retried" in again.text


def test_maintenance_window_create_and_end(operator, api, clock):
    bad = operator.form("/maintenance/new", {"name": "db upgrade", "kind": "one_off",
                                             "ends_at": ""})
    assert bad.status_code == 422 and field_error(bad.text, "ends_at")
    ends = clock.now() + dt.timedelta(hours=2)
    created = operator.form("/maintenance/new", {"name": "db upgrade", "kind": "one_off",
                                                 "ends_at": ends.strftime("%Y-%m-%dT%H:%M")})
    assert "db upgrade" in created.text and "status-active" in created.text
    [window] = api.get("/api/v1/maintenance-windows").json()["items"]
    assert window["active"]
    ended = operator.form(f"/maintenance/{window['id']}/end")
    assert "ended" in ended.text
    assert not api.get(f"/api/v1/maintenance-windows/{window['id']}").json()["active"]


def test_error_detail_and_resolve(app, operator, api, clock):
    error_id = make_error(app, clock.now(), "OperationalError", message="connection refused")
    page = operator.get(f"/errors/{error_id}").text
    assert "connection refused" in page and "Traceback" in page and 'id="resolve"' in page
    resolved = operator.form(f"/errors/{error_id}/resolve")
    assert "resolved" in resolved.text and 'id="resolve"' not in resolved.text
    assert api.get(f"/api/v1/errors/{error_id}").json()["resolved"] is True


def test_static_assets_and_pages_name_no_other_host(operator, server, application):
    for path in ("/static/console.css", "/static/console.js", "/static/favicon.svg"):
        assert operator.get(path).status_code == 200
    page = operator.get(f"/applications/{application['uuid']}").text
    hosts = set(re.findall(r'(?:src|href)="(?:https?:)?//([^/"]+)', page))
    assert hosts <= {server.url.split("//")[1]}
    assert 'rel="icon"' in page


def test_overview_names_channel_breakers_and_every_pill_has_a_colour(operator, api, runtime):
    channel = api.post("/api/v1/channels", json={"name": "ops hook", "kind": "webhook",
                                                  "url": "https://hooks.example.com/x"}).json()
    runtime.breakers.get(channel_breaker_name(channel["id"]))  # as delivery creates it
    dependencies = re.search(r'id="dependencies".*?</section>', operator.get("/").text,
                             re.S).group(0)
    assert "channel ops hook" in dependencies
    assert f"channel:{channel['id']}" not in dependencies
    stylesheet = operator.get("/static/console.css").text
    base_rule = re.search(r"\.status \{[^}]*\}", stylesheet).group(0)
    assert "background: var(--new)" in base_rule and "color: #fff" in base_rule
    assert re.search(r"\.status-empty[ ,]", stylesheet)


def test_reminders_escalation_and_dependency_on_the_form(operator, api, application):
    channel = api.post("/api/v1/channels", json={"name": "pager", "kind": "webhook",
                                                  "url": "https://hooks.example.com/x"}).json()
    uuid = application["uuid"]
    form = {**APPLICATION_FORM, "reminder_interval_seconds": "900", "channels": [channel["id"]],
            "escalation-0-after": "600", "escalation-0-channels": [channel["id"]],
            "escalation-1-after": "300", "escalation-1-channels": [channel["id"]],
            "depends_on": "not-a-uuid"}
    refused = operator.form(f"/applications/{uuid}/edit", form)
    assert refused.status_code == 422
    assert field_error(refused.text, "depends_on")
    assert "later than the one before" in refused.text
    cycle = operator.form(f"/applications/{uuid}/edit", {**form, "escalation-1-after": "",
                                                          "escalation-1-channels": [],
                                                          "depends_on": uuid})
    assert cycle.status_code == 422 and field_error(cycle.text, "depends_on")
    saved = operator.form(f"/applications/{uuid}/edit", {**form, "escalation-1-after": "1200",
                                                          "depends_on": ""})
    assert "Saved." in saved.text
    state = api.get(f"/api/v1/applications/{uuid}").json()
    assert state["reminder_interval_seconds"] == 900 and state["channels"] == [channel["id"]]
    assert state["escalation"] == [{"after_seconds": 600, "channels": [channel["id"]]},
                                   {"after_seconds": 1200, "channels": [channel["id"]]}]
    again = operator.get(f"/applications/{uuid}/edit").text
    assert 'value="1200"' in again and 'value="900"' in again


class Controls(HTMLParser):
    """Form controls of a page, and whether each has a label (for=, wrapping, or aria-label)."""

    def __init__(self):
        super().__init__()
        self.label_for: set[str] = set()
        self.inside_label = 0
        self.controls: list[tuple[str, bool, str | None]] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "label":
            self.inside_label += 1
            if attributes.get("for"):
                self.label_for.add(attributes["for"])
        elif tag in ("input", "select", "textarea") and attributes.get("type") not in (
                "hidden", "submit", "button"):
            self.controls.append((attributes.get("name", ""), self.inside_label > 0 or
                                  "aria-label" in attributes, attributes.get("id")))

    def handle_endtag(self, tag):
        if tag == "label":
            self.inside_label -= 1

    def unlabelled(self) -> list[str]:
        return [name for name, wrapped, element_id in self.controls
                if not wrapped and element_id not in self.label_for]


def test_every_form_control_has_a_label(operator, api, application):
    api.post("/api/v1/channels", json={"name": "hook", "kind": "webhook",
                                       "url": "https://hooks.example.com/x"})
    pages = ["/applications", "/applications/new", f"/applications/{application['uuid']}",
             f"/applications/{application['uuid']}/edit", "/channels/new?kind=webhook",
             "/channels/new?kind=email", "/channels/1", "/maintenance", "/incidents"]
    for path in pages:
        controls = Controls()
        controls.feed(operator.get(path).text)
        assert controls.controls or path == "/incidents", path
        assert controls.unlabelled() == [], path


def test_pagerduty_and_apprise_channels_from_their_forms(operator, api, sink):
    form = operator.get("/channels/new", params={"kind": "pagerduty"}).text
    assert 'name="routing_key"' in form and "Events API URL (optional)" in form
    created = operator.form("/channels/new", {"kind": "pagerduty", "name": "pager",
                                              "routing_key": "R0utingKey1234", "url": ""},
                            allow_redirects=False)
    assert created.status_code == 302
    events = f"{sink.url}/v2/enqueue"
    created = operator.form("/channels/new", {"kind": "pagerduty", "name": "pager here",
                                              "routing_key": "R0utingKey5678", "url": events},
                            allow_redirects=False)
    assert created.status_code == 302
    apprise_url = sink.url.replace("http://", "json://", 1)
    created = operator.form("/channels/new", {"kind": "apprise", "name": "apprise json",
                                              "url": apprise_url}, allow_redirects=False)
    assert created.status_code == 302
    listed = {channel["name"]: channel for channel in api.get("/api/v1/channels").json()["items"]}
    assert listed["pager"]["kind"] == "pagerduty" and "R0utingKey1234" not in str(listed["pager"])
    assert listed["pager"]["url"] is None and listed["pager here"]["url"] == events
    apprise = listed["apprise json"]
    assert apprise["kind"] == "apprise"
    saved = operator.form(f"/channels/{apprise['id']}", {"name": "apprise renamed", "url": ""})
    assert "Channel saved." in saved.text  # the masked URL left empty keeps the stored one
    result = operator.form(f"/channels/{apprise['id']}/test")
    assert "Test alert delivered" in result.text and len(sink.received) == 1


def test_a_browser_gets_a_console_error_as_a_page_other_clients_the_envelope(reader, operator):
    browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    missing = "/applications/00000000-0000-4000-8000-000000000000"
    page = operator.get(missing, headers=browser)
    assert page.status_code == 404 and page.headers["Content-Type"].startswith("text/html")
    assert "APPLICATION_NOT_FOUND" in page.text and 'href="/"' in page.text
    refused = reader.get("/channels/new", headers=browser)
    assert refused.status_code == 403 and "read-only key" in refused.text
    assert "<html" in refused.text
    assert_envelope(operator.get(missing), 404, "APPLICATION_NOT_FOUND")
