"""``gridctl ui`` in a real headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium): what a user clicks and sees. Skipped, saying why, where the browser is missing.

Set UI_SCREENSHOT=PATH to keep the sweep page's screenshot (the README's).
"""

from __future__ import annotations

import os
import shutil
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Gridctl
from scripts import METRICS_SWEEP, WEIGHTS
from webview import WebView

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 120
"""Seconds to wait for what a page shows: generous, a loaded machine is slow."""

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(
        f"no {CHROMIUM} or {CHROMEDRIVER}: apt-get install chromium chromium-driver",
        allow_module_level=True,
    )

from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402  (after the skip above)

TICKING = """\
import argparse, os, time
parser = argparse.ArgumentParser()
parser.add_argument("--until")
args = parser.parse_args()
tick = 0
while not os.path.exists(args.until):
    print("tick", tick, flush=True)
    tick += 1
    time.sleep(0.3)
print("released", flush=True)
"""
RATES = (0.1, 0.3, 1.0, 3.0)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A finished 4-experiment sweep and the web view of its home."""
    root = tmp_path_factory.mktemp("browser")
    project = root / "project"
    project.mkdir()
    (project / "train.py").write_text(METRICS_SWEEP)
    (project / "ticking.py").write_text(textwrap.dedent(TICKING))
    gridctl = Gridctl(root / "home", project)
    rates = "[" + ", ".join(map(str, RATES)) + "]"
    result = gridctl("run", "--name", "sweep", "--wait", "train.py", "--lr", rates)
    assert result.returncode == 0, result.stderr
    view = WebView(gridctl)
    yield gridctl, view
    view.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The flags of a machine with no network and no display (root needs --no-sandbox).
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    prefs = {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    options.add_experimental_option("prefs", prefs)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads
    yield driver
    driver.quit()


def until(what: Callable[[], object], message: str) -> object:
    """What ``what`` gives once truthy; fails saying ``message`` after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            found = what()
        except StaleElementReferenceException:  # the page swapped it for a fresher one
            found = None
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not seen within {WAIT} s: {message}")


def rows(driver) -> list[list[str]]:
    table = driver.find_element(By.ID, "experiments")
    return [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]


def test_a_sweep_is_one_click_from_the_runs_page(served, browser, tmp_path):
    _, view = served
    browser.get(view.url)
    until(lambda: "?token=" not in browser.current_url, "the token leaving the address")
    browser.find_element(By.LINK_TEXT, "sweep").click()
    until(lambda: browser.current_url.endswith("/runs/sweep"), "the sweep's page")
    shown = rows(browser)
    assert [r[0] for r in shown] == [f"sweep-exp{i}" for i in range(len(RATES))]
    assert [r[1] for r in shown] == ["succeeded"] * len(RATES)
    assert [float(r[2]) for r in shown] == list(RATES)
    charts = browser.find_elements(By.CSS_SELECTOR, "figure.chart")
    assert sorted(c.get_attribute("data-metric") for c in charts) == ["acc", "loss"]
    for chart in charts:
        assert len(chart.find_elements(By.CSS_SELECTOR, "svg.plot polyline")) == len(RATES)
    shot = tmp_path / "run-page.png"
    assert browser.save_screenshot(str(shot))
    if os.environ.get("UI_SCREENSHOT"):
        shutil.copy(shot, os.environ["UI_SCREENSHOT"])

    header = browser.find_element(By.XPATH, "//table[@id='experiments']//th[text()='loss']")
    column = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#experiments thead th")]
    header.click()
    ascending = [float(r[column.index("loss")]) for r in rows(browser)]
    assert ascending == sorted(ascending) and len(set(ascending)) == len(RATES)
    header.click()
    assert [float(r[column.index("loss")]) for r in rows(browser)] == ascending[::-1]


def test_an_artifact_downloads_from_its_experiments_page(served, browser):
    _, view = served
    browser.get(view.url)
    browser.get(f"{view.base}/experiments/sweep-exp1")
    browser.find_element(By.LINK_TEXT, "out/weights.bin").click()
    target = Path(browser.downloads) / "weights.bin"
    until(lambda: target.exists() and target.read_bytes() == WEIGHTS, "the downloaded file")


def test_an_experiments_log_follows_the_script_live(served, browser, tmp_path):
    gridctl, view = served
    release = tmp_path / "release"
    result = gridctl("run", "--name", "live", "ticking.py", "--until", str(release))
    assert result.returncode == 0, result.stderr
    browser.get(view.url)
    browser.get(f"{view.base}/experiments/live-exp0")
    browser.execute_script("window.notReloaded = true;")

    def log() -> str:
        return browser.find_element(By.ID, "log").text

    first = until(lambda: "tick 1" in log() and log(), "the first lines")
    last_tick = int(first.rsplit("tick ", 1)[1].split()[0])
    until(lambda: f"tick {last_tick + 5}" in log(), "lines printed after the page opened")
    release.write_text("go")
    until(
        lambda: browser.find_element(By.CSS_SELECTOR, "[data-field=status]").text == "succeeded",
        "the experiment's end",
    )
    assert "released" in log()
    assert browser.execute_script("return window.notReloaded === true;")
