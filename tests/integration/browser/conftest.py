"""Browser tests: a real headless Chromium (Debian ``chromium`` + ``chromium-driver``) driven by Selenium
against the gateway served by uvicorn. Screenshots go to ``tests/artifacts/`` (git-ignored)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.gateway.conftest import gateway, gateway_dsn, live_gateway  # noqa: F401 - fixtures

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1366,900",
)


@pytest.fixture
def download_dir() -> Iterator[Path]:
    """A fresh folder Chromium downloads into."""
    path = Path(tempfile.mkdtemp(prefix="tmi-browser-dl-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def browser(download_dir: Path) -> Iterator[Any]:
    """Headless Chromium with a fresh profile; downloads go to ``download_dir``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(
            "Chromium is not installed: `make apt-browser` (apt-get install chromium chromium-driver)"
        )
    profile = Path(tempfile.mkdtemp(prefix="tmi-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(download_dir), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)}
    )
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver: Any, name: str) -> Path:
    """Save a full-page-width screenshot under tests/artifacts/ and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_script("return Math.min(document.body.scrollHeight + 40, 4000)")
    driver.set_window_size(1366, max(900, int(height)))
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1366, 900)
    return path
