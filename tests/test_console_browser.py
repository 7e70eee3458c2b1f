"""SPEC §10 in real Chromium: an operator's whole day in the console, in one browser session.

Sign in; create an application with the keyboard only (a bad cron shows its error beside the
field); ping it with start/end pairs and see the durations in the chart and the log; see it go
down without reloading; acknowledge; create a webhook channel and send a test; create and end a
maintenance window; retry a dead alert; resolve an error; then a read-only session is offered
no control and refused a forged POST. The browser's network log shows no other host.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid as uuid_lib
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from database import db
from models import Alert
from tests.conftest import make_key
from tests.factories import make_error
from tests.test_dashboard import (
    CHROMEDRIVER,
    CHROMIUM,
    sign_in,
    text_of,
    wait,
)

DESKTOP = (1280, 900)
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
# Screenshots show the whole page: a window as tall as it.
TALL_DESKTOP = {"width": 1280, "height": 2300, "deviceScaleFactor": 1, "mobile": False}
TALL_PHONE = {**PHONE, "height": 3000}


@pytest.fixture
def app_config(app_config):
    return {**app_config, "DASHBOARD_REFRESH_SECONDS": 1}


@pytest.fixture
def database_url(sqlite_template, tmp_path):
    """SQLite only, to keep one browser day fast: the browser's day is the same on both
    databases, and test_console.py runs the console's pages on PostgreSQL too."""
    path = tmp_path / "heartbeat.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def chromium(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def tab_to(browser, element_id: str, limit: int = 80) -> None:
    """Press Tab until the element has focus, as a keyboard user would."""
    for _ in range(limit):
        if browser.switch_to.active_element.get_attribute("id") == element_id:
            return
        ActionChains(browser).send_keys(Keys.TAB).perform()
    raise AssertionError(f"#{element_id} never took the focus")


def keys(browser, *sequence) -> None:
    ActionChains(browser).send_keys(*sequence).perform()


def click(browser, selector: str) -> None:
    wait(browser, lambda driver: driver.find_element(By.CSS_SELECTOR, selector).click() or True)


def requested_hosts(browser) -> set[str]:
    hosts = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if url.startswith(("http:", "https:", "ws:", "wss:")):
                hosts.add(urlsplit(url).netloc)
    return hosts


def screenshot(browser, name: str, tmp_path, metrics: dict) -> None:
    """The page in a window of `metrics`, saved in CONSOLE_SCREENSHOT_DIR (the README's come
    from `CONSOLE_SCREENSHOT_DIR=docs pytest tests/test_console_browser.py`)."""
    folder = os.environ.get("CONSOLE_SCREENSHOT_DIR", str(tmp_path))
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    browser.save_screenshot(os.path.join(folder, name))


def test_operator_day(app, server, api, anonymous, chromium, clock, runtime, sink, tmp_path):
    browser, url = chromium, server.url
    error_id = make_error(app, clock.now(), "OperationalError", message="connection refused")

    # Sign in, then create an application with the keyboard only.
    browser.get(url + "/applications")
    sign_in(browser, make_key(app, "operator"))
    wait(browser, lambda driver: driver.current_url == url + "/")
    browser.get(url + "/applications")
    tab_to(browser, "new-application")
    keys(browser, Keys.ENTER)
    wait(browser, lambda driver: driver.current_url == url + "/applications/new")
    tab_to(browser, "name")
    keys(browser, "nightly-backup", Keys.TAB, Keys.TAB, Keys.TAB, "db nightly", Keys.TAB)
    keys(browser, Keys.ARROW_RIGHT)  # the schedule: a cron expression
    assert browser.switch_to.active_element.get_attribute("id") == "schedule-cron"
    tab_to(browser, "cron")
    keys(browser, "61 * * * *", Keys.ENTER)
    error = wait(browser, lambda driver: driver.find_element(By.ID, "cron-error")).text
    assert error == "Not a valid cron expression."
    assert browser.find_element(By.ID, "cron").get_attribute("aria-invalid") == "true"
    tab_to(browser, "cron")
    keys(browser, Keys.END, *[Keys.BACKSPACE] * len("61 * * * *"), "*/5 * * * *", Keys.ENTER)
    wait(browser, lambda driver: driver.find_element(By.ID, "ping-url"))
    [application] = api.get("/api/v1/applications").json()["items"]
    uuid = application["uuid"]
    assert application["cron"] == "*/5 * * * *" and application["tags"] == ["db", "nightly"]
    assert browser.current_url == f"{url}/applications/{uuid}"

    # Runs measured by start/end pairs show in the chart and the log, live.
    for seconds in (4, 9):
        rid = str(uuid_lib.uuid4())
        assert anonymous.get(f"/ping/{uuid}/start", params={"rid": rid}).status_code == 200
        clock.advance(seconds=seconds)
        assert anonymous.post(f"/ping/{uuid}", params={"rid": rid},
                              data=f"backup took {seconds} s").status_code == 200
    wait(browser, lambda driver: "4.0 s, 9.0 s" in text_of(driver, "duration-list"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#durations rect.bar-ok")) == 2
    assert "9.0 s" in text_of(browser, "heartbeats")

    # It fails: the page shows it down without a reload; acknowledge from the page.
    clock.advance(minutes=2)
    assert anonymous.get(f"/ping/{uuid}/fail").status_code == 200
    wait(browser, lambda driver: text_of(driver, "application-status") == "down")
    # The badge is fetched again with the page's live parts (its own URL would be cached).
    wait(browser, lambda driver: "?at=" in driver.find_element(By.ID, "badge")
         .get_attribute("src"))
    screenshot(browser, "console-desktop.png", tmp_path, TALL_DESKTOP)
    click(browser, "#incidents button[id^=acknowledge-]")
    wait(browser, lambda driver: "api-key:operator" in text_of(driver, "incidents"))
    [incident] = api.get(f"/api/v1/applications/{uuid}/incidents").json()["items"]
    assert incident["state"] == "acknowledged"

    # The phone: the same page fits its width.
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    browser.refresh()
    wait(browser, lambda driver: driver.find_element(By.ID, "ping-url"))
    assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(browser, "console-phone.png", tmp_path, TALL_PHONE)
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    for path in ("/applications", "/applications/new", "/alerts", "/channels/new"):
        browser.get(url + path)
        wait(browser, lambda driver: driver.find_element(By.ID, "content"))
        assert browser.execute_script(
            "return document.documentElement.scrollWidth") <= PHONE["width"], path
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # A webhook channel, and a test sent through it.
    browser.get(url + "/channels")
    click(browser, "#new-webhook")
    wait(browser, lambda driver: driver.find_element(By.ID, "name")).send_keys("ops hook")
    browser.find_element(By.ID, "url").send_keys(sink.url)
    click(browser, "#save-channel")
    click(browser, "#send-test")
    assert "Test alert delivered" in text_of(browser, "test-result")
    assert len(sink.received) == 1
    [channel] = api.get("/api/v1/channels").json()["items"]

    # A maintenance window, created and ended.
    browser.get(url + "/maintenance")
    wait(browser, lambda driver: driver.find_element(By.ID, "name")).send_keys("db upgrade")
    ends = browser.find_element(By.ID, "ends_at")
    # Chromium's date-time picker takes no typed text headless: the value is set as typed.
    browser.execute_script("arguments[0].value = arguments[1]", ends,
                           (clock.now() + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    click(browser, "#create-window")
    assert "active" in text_of(browser, "window-list")
    click(browser, "#window-list button[id^=end-window-]")
    wait(browser, lambda driver: "ended" in text_of(driver, "window-list"))
    [window] = api.get("/api/v1/maintenance-windows").json()["items"]
    assert window["active"] is False

    # A dead alert, retried, goes out.
    with app.app_context():
        now = clock.now()
        dead = Alert(channel_id=channel["id"], event="application.down", state="dead",
                     payload={"event": "application.down"}, attempt_count=5,
                     next_attempt_at=now, created_at=now, expires_at=now,
                     last_error="HTTP 503")
        db.session.add(dead)
        db.session.commit()
        dead_id = dead.id
        db.session.remove()
    browser.get(url + "/alerts?state=dead")
    click(browser, f'tr[data-alert="{dead_id}"] a')
    click(browser, "#retry")
    wait(browser, lambda driver: text_of(driver, "alert-state") == "pending")
    runtime.deliverer.drain()
    wait(browser, lambda driver: text_of(driver, "alert-state") == "delivered")  # live
    assert len(sink.received) == 2

    # An error, resolved.
    browser.get(f"{url}/errors/{error_id}")
    click(browser, "#resolve")
    wait(browser, lambda driver: text_of(driver, "error-state") == "resolved")

    # A read-only session: everything visible, no control offered, a forged change refused.
    click(browser, "#sign-out")
    wait(browser, lambda driver: driver.current_url == url + "/login")
    sign_in(browser, make_key(app, "wallboard", read_only=True))
    wait(browser, lambda driver: driver.current_url == url + "/")
    browser.get(f"{url}/applications/{uuid}")
    assert "nightly-backup" in text_of(browser, "status-panel")
    assert browser.find_elements(By.CSS_SELECTOR, "main form, main button:not([data-copy])") == []
    browser.execute_script("""
        const form = document.createElement('form');
        form.method = 'post'; form.action = arguments[0];
        const token = document.querySelector('input[name=csrf_token]').cloneNode();
        form.appendChild(token); document.body.appendChild(form); form.submit();""",
                           f"/applications/{uuid}/pause")
    wait(browser, lambda driver: "FORBIDDEN" in driver.find_element(By.TAG_NAME, "body").text)
    assert api.get(f"/api/v1/applications/{uuid}").json()["status"] == "down"

    assert requested_hosts(browser) == {urlsplit(url).netloc}
