"""§6.7 dashboard: an operator signs in with a key and watches an application go down, in Chromium."""
from __future__ import annotations

import os
import shutil

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as shown
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import Client, make_key
from tests.factories import make_channel, make_error
from tests.helpers import assert_envelope

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
PHONE_WIDTH, PHONE_HEIGHT = 390, 1400


@pytest.fixture
def app_config(app_config):
    return {**app_config, "DASHBOARD_REFRESH_SECONDS": 1}


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    options.add_experimental_option("mobileEmulation", {"deviceMetrics": {
        "width": PHONE_WIDTH, "height": PHONE_HEIGHT, "pixelRatio": 2}})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def status_of(browser, uuid: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, f'tr[data-uuid="{uuid}"] .status').text


def wait(browser, condition):
    """Until `condition` holds; the page reloads itself, so an element may vanish mid-read."""
    return WebDriverWait(browser, 15, poll_frequency=0.1, ignored_exceptions=(
        NoSuchElementException, StaleElementReferenceException, WebDriverException)
    ).until(condition)


def text_of(browser, element_id: str) -> str:
    return wait(browser, lambda driver: driver.find_element(By.ID, element_id).text)


def sign_in(browser, key: str) -> None:
    browser.find_element(By.ID, "api_key").send_keys(key)
    browser.find_element(By.ID, "sign-in").click()


def test_operator_sees_an_application_go_down_with_its_incident(
        app, server, api, anonymous, browser, clock, tmp_path):
    job = api.post("/api/v1/applications", json={"name": "nightly-backup",
                                                  "period_seconds": 3600}).json()
    api.post("/api/v1/applications", json={"name": "invoice-run", "cron": "0 3 * * *"})
    channel_id = make_channel(app, "ops-webhook", is_operator=True)
    api.patch(f"/api/v1/applications/{job['uuid']}", json={"channels": [channel_id]})
    make_error(app, clock.now(), "OperationalError", message="connection refused")
    assert anonymous.get(f"/ping/{job['uuid']}").status_code == 200
    clock.advance(minutes=5)

    browser.get(server.url + "/")
    assert browser.current_url == server.url + "/login"
    sign_in(browser, "hbm_00000000_wrong")
    assert "not valid" in wait(browser, shown.presence_of_element_located(
        (By.ID, "login-error"))).text

    sign_in(browser, make_key(app, "wallboard", read_only=True))
    wait(browser, shown.url_to_be(server.url + "/"))
    wait(browser, lambda driver: status_of(driver, job["uuid"]) == "up")
    assert "5 min ago" in text_of(browser, "applications")
    assert "No open incidents" in text_of(browser, "incidents")
    assert "OperationalError" in text_of(browser, "errors")
    assert "database" in text_of(browser, "dependencies")

    assert anonymous.get(f"/ping/{job['uuid']}/fail").status_code == 200
    # No reload by the test: the page refreshes itself.
    wait(browser, lambda driver: status_of(driver, job["uuid"]) == "down")
    incidents = text_of(browser, "incidents")
    assert "nightly-backup" in incidents and "failed" in incidents
    queue = text_of(browser, "alerts")
    assert "application.down" in queue and "ops-webhook" in queue

    viewport_width = browser.execute_script("return window.innerWidth")
    page_width = browser.execute_script("return document.documentElement.scrollWidth")
    assert viewport_width == PHONE_WIDTH
    assert page_width <= viewport_width, "the dashboard scrolls sideways on a phone"
    browser.save_screenshot(os.environ.get("DASHBOARD_SCREENSHOT", str(tmp_path / "dashboard.png")))

    wait(browser, lambda driver: driver.find_element(By.ID, "sign-out").click() or True)
    wait(browser, shown.url_to_be(server.url + "/login"))
    browser.get(server.url + "/")
    assert browser.current_url == server.url + "/login"


def test_forms_without_the_csrf_token_are_refused(app, server):
    client = Client(server.url)
    form = client.get("/login")
    assert form.status_code == 200 and 'name="csrf_token"' in form.text
    response = client.post("/login", data={"api_key": make_key(app)}, allow_redirects=False)
    assert_envelope(response, 403, "FORBIDDEN")
    assert_envelope(client.post("/logout", data={"csrf_token": "forged"}), 403, "FORBIDDEN")


def test_signed_in_session_cookie_holds_no_key_and_is_http_only(app, server):
    client = Client(server.url)
    page = client.get("/login").text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    key = make_key(app)
    response = client.post("/login", data={"api_key": key, "csrf_token": token},
                           allow_redirects=False)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert key not in cookie and key.split("_", 2)[2][:10] not in cookie
    assert client.get("/", allow_redirects=False).status_code == 200
