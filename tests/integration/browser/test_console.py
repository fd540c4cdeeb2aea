"""The console in a real headless Chromium: log in, filter, download a manifest; resolve a flag; add and
edit a note; split with confirmation. Screenshots of the main pages are saved to tests/artifacts/."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.integration.browser.conftest import screenshot
from tests.integration.gateway.conftest import LiveGateway

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def _navigate(driver: Any, element: Any) -> None:
    """Click ``element`` and wait until the next page has replaced this one and finished loading.

    A marker on the old page's ``window`` tells the pages apart (polling an old element for staleness
    races with Chromium's DOM teardown)."""
    driver.execute_script("window.__tmiOldPage = true")
    element.click()
    WebDriverWait(driver, 15, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return !window.__tmiOldPage && document.readyState === 'complete'")
    )


def _login(driver: Any, url: str, token: str) -> None:
    driver.get(f"{url}/login")
    driver.find_element(By.ID, "token").send_keys(token)
    _navigate(driver, driver.find_element(By.ID, "login"))


def _wait_for_file(folder: Path, suffix: str, timeout: float = 15) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in folder.iterdir() if p.suffix == suffix]
        if done:
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no {suffix} download in {folder}: {list(folder.iterdir())}")


def test_researcher_filters_and_downloads_a_manifest(
    live_gateway: LiveGateway, browser: Any, download_dir: Path
) -> None:
    g = live_gateway.gateway
    browser.get(f"{live_gateway.url}/ui/research")
    assert browser.current_url.startswith(f"{live_gateway.url}/login?next=")
    screenshot(browser, "login")
    browser.find_element(By.ID, "token").send_keys(g.researcher)
    _navigate(browser, browser.find_element(By.ID, "login"))
    assert browser.current_url.startswith(f"{live_gateway.url}/ui/research")
    assert browser.find_element(By.ID, "count-instances").text == "12"
    Select(browser.find_element(By.ID, "f-laterality")).select_by_value("L")
    Select(browser.find_element(By.ID, "f-view_position")).select_by_value("CC")
    _navigate(browser, browser.find_element(By.ID, "apply"))
    assert browser.find_element(By.ID, "count-instances").text == "3"
    rows = browser.find_elements(By.CSS_SELECTOR, "#studies tbody tr")
    assert len(rows) == 3
    screenshot(browser, "research")
    browser.find_element(By.ID, "download-manifest").click()
    manifest = json.loads(_wait_for_file(download_dir, ".json").read_text())
    assert manifest["count"] == 3 and manifest["filters"] == {"view_position": ["CC"], "laterality": ["L"]}
    assert all(
        item["key"].endswith(".dcm") and item["url"].startswith("http") for item in manifest["instances"]
    )
    assert g.audit_rows("research.manifest")[-1]["detail"]["instances"] == 3
    # the researcher's session cannot open the admin console
    browser.get(f"{live_gateway.url}/ui/admin")
    assert "your role may not use this page" in browser.page_source


def test_admin_resolves_a_flag_and_edits_notes(live_gateway: LiveGateway, browser: Any) -> None:
    g = live_gateway.gateway
    _login(browser, live_gateway.url, g.admin)
    assert browser.current_url == f"{live_gateway.url}/ui/admin"
    flags = browser.find_elements(By.CSS_SELECTOR, "section.flag")
    assert len(flags) == 1
    highlighted = [e.text for e in flags[0].find_elements(By.CSS_SELECTOR, ".side .diff")]
    assert "Name" in highlighted and "Doe^Jnae^Quincy" in highlighted and "Doe^Jane^Quincy" in highlighted
    screenshot(browser, "admin-queue")
    flags[0].find_element(By.NAME, "resolution").send_keys("typo: confirmed with the clinic by phone")
    _navigate(browser, flags[0].find_element(By.CSS_SELECTOR, "button.resolve"))
    assert browser.find_element(By.ID, "queue-empty").is_displayed()
    assert g.audit_rows("crosswalk.flag.resolve")[-1]["actor"].startswith("token:")

    browser.get(f"{live_gateway.url}/ui/admin/search")
    browser.find_element(By.ID, "s-name").send_keys("jane doe")
    _navigate(browser, browser.find_element(By.ID, "search"))
    _navigate(browser, browser.find_element(By.CSS_SELECTOR, "#hits tbody a"))
    assert g.persons[0].pseudonym in browser.find_element(By.TAG_NAME, "h1").text
    browser.find_element(By.ID, "note-body").send_keys("Prefers morning appointments.")
    _navigate(browser, browser.find_element(By.ID, "add-note-button"))
    assert "Prefers morning appointments." in browser.find_element(By.CSS_SELECTOR, ".note-body").text
    browser.find_element(By.CSS_SELECTOR, "#notes ~ .card details:last-of-type summary").click()
    editor = browser.find_element(By.CSS_SELECTOR, "form.edit-note textarea")
    editor.clear()
    editor.send_keys("Prefers afternoon appointments.")
    _navigate(browser, browser.find_element(By.CSS_SELECTOR, "form.edit-note button"))
    assert "Prefers afternoon appointments." in browser.find_element(By.CSS_SELECTOR, ".note-body").text
    assert "history (2 versions)" in browser.page_source
    screenshot(browser, "admin-person")
    assert [r["action"] for r in g.audit_rows() if r["action"].startswith("crosswalk.note")] == [
        "crosswalk.note.add",
        "crosswalk.note.edit",
    ]


def test_admin_split_needs_confirmation(live_gateway: LiveGateway, browser: Any) -> None:
    g = live_gateway.gateway
    _login(browser, live_gateway.url, g.admin)
    person_id = g.persons[0].person_id
    browser.get(f"{live_gateway.url}/ui/admin/persons/{person_id}")
    boxes = browser.find_elements(By.CSS_SELECTOR, "#identities input[type=checkbox]")
    assert len(boxes) == 2
    boxes[1].click()
    browser.find_element(By.CSS_SELECTOR, "#split-form input[name=reason]").send_keys("different woman")
    _navigate(browser, browser.find_element(By.ID, "split"))
    assert "Confirm split" in browser.find_element(By.TAG_NAME, "h1").text
    screenshot(browser, "admin-confirm-split")
    assert not g.audit_rows("crosswalk.split")  # nothing happened before confirming
    _navigate(browser, browser.find_element(By.ID, "confirm"))
    assert "changed=split" in browser.current_url
    assert len(browser.find_elements(By.CSS_SELECTOR, "#identities tbody tr")) == 1
    assert len(g.audit_rows("crosswalk.split")) == 1
