"""A page opened in a real browser: Debian's Chromium, driven by selenium through the system's
chromedriver (.ci/run installs both). Tests that use it are ``must_run``: CI fails if they
skip."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@dataclass(frozen=True)
class Rendered:
    console_errors: list[dict[str, object]]
    plots: list[tuple[float, float, int]]
    """Each ``<figure>``'s SVG: drawn width, height (px) and how many paths it holds."""
    resources_loaded: int
    screenshot: Path


def render(page: Path, screenshot: Path, selector: str = "figure svg") -> Rendered:
    """Open ``page`` headless, read its console and the SVGs under ``selector``, and save a
    full-height screenshot. Skips (which CI turns into a failure) without the browser."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian's chromium and chromium-driver are missing (apt-get install -y "
                    "chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1100,1400"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(page.as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        plots = driver.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0])).map(s => "
            "[s.getBoundingClientRect().width, s.getBoundingClientRect().height, "
            "s.querySelectorAll('path').length])", selector)
        loaded = driver.execute_script("return performance.getEntriesByType('resource').length")
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1100, min(int(height) + 100, 16000))
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(screenshot))
        print(f"screenshot: {screenshot}")
    finally:
        driver.quit()
    return Rendered(errors, [tuple(p) for p in plots], int(loaded), screenshot)
