"""The default demo end to end in a real browser: Debian's Chromium driven by Playwright.

Starts ``streamlit run app.py`` on a free localhost port, forgets a class with the default
method, waits for the result, opens Compare and checks that the embedding, confusion and MIA
charts are drawn. Screenshots (light and dark theme) go to test-artifacts/.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
RUN_LIMIT_MS = 150_000

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def studio_url():
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).status == 200:
                break
        except OSError:
            time.sleep(0.3)
    else:
        server.kill()
        pytest.fail("streamlit did not come up: " + server.stdout.read().decode()[-2000:])
    yield url
    server.terminate()
    server.wait(10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield chromium
        chromium.close()


def wait_idle(page, timeout_ms: int = 60_000) -> None:
    """The app has finished its script run (Streamlit marks the stApp element)."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms)


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_a_deep_link_first_gets_the_studio_navigation(studio_url, browser):
    """Runs first, on a fresh server: the first visitor arrives on /model, not on Home."""
    page = browser.new_page()
    page.goto(f"{studio_url}/model")
    wait_idle(page)
    page.get_by_text("Test accuracy").first.wait_for()
    nav = page.get_by_test_id("stSidebarNav")
    assert nav.get_by_text("Home", exact=True).count() == 1 and nav.get_by_text("shared").count() == 0
    page.close()


def test_default_demo_end_to_end(studio_url, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, color_scheme="light")
    page = context.new_page()
    page.goto(studio_url)
    wait_idle(page)
    page.get_by_text("Run the default demo").first.wait_for()
    shot(page, "01_home_light")

    page.get_by_role("link", name="Unlearn").click()
    wait_idle(page)
    page.get_by_text("Class to forget").wait_for()
    page.get_by_test_id("stRadio").filter(has_text="Class to forget").get_by_text("Trouser").click()
    wait_idle(page)
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("button", name="Stop training").wait_for(timeout=30_000)
    page.get_by_text("Losses per phase").first.wait_for(timeout=30_000)
    shot(page, "02_unlearn_running_light")
    page.get_by_text("finished in").wait_for(timeout=RUN_LIMIT_MS)
    wait_idle(page)
    shot(page, "03_unlearn_done_light")

    page.get_by_role("link", name="Compare").first.click()
    wait_idle(page)
    for text in ("Penultimate features", "Test-set confusion", "what the MIA classifier sees"):
        page.get_by_text(text).first.wait_for(timeout=60_000)
    assert page.locator(".js-plotly-plot").count() >= 3
    assert page.get_by_text("Traceback").count() == 0
    page.wait_for_timeout(1000)
    shot(page, "04_compare_light")
    charts = page.locator(".js-plotly-plot")
    for theme in ("light", "dark"):
        page.emulate_media(color_scheme=theme)
        page.wait_for_timeout(1000)
        for i, name in enumerate(("embedding", "confusion", "mia")):
            charts.nth(i).scroll_into_view_if_needed()
            charts.nth(i).screenshot(path=str(ARTIFACTS / f"05_{name}_{theme}.png"))
    page.get_by_role("link", name="Unlearn").click()
    wait_idle(page)
    page.wait_for_timeout(1000)
    shot(page, "06_unlearn_dark")
    context.close()
