"""The studio end to end in a real browser: Debian's Chromium driven by Playwright.

Starts ``streamlit run app.py`` on a free localhost port. A class demo forgets a class with the
default method (one epoch per stage); its Avg.Gap comes with the result (shipped Retrain); Compare draws
the UMAP view, and a click on a point shows that image under the three models. A shared link restores its choices
without running anything; two runs from it are then set side by side on the Methods page. The
Saliency page draws its layer views. Screenshots (light and dark theme) go to test-artifacts/.
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
RUN_LIMIT_MS = 240_000  # a hang, not a timing: the suite runs one test process per core beside this one

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.xdist_group("browser")  # one server and one Chromium for the module, in test order


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def studio_url():
    port = free_port()
    # One training thread: the suite's other worker runs tests on the second core.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
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
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:  # a loaded machine: the server's own shutdown is not under test here
        server.kill()
        server.wait()


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


def shot(page, name: str, height: int | None = None) -> None:
    """A screenshot; ``height`` makes the window that tall first (Streamlit scrolls inside its own pane)."""
    ARTIFACTS.mkdir(exist_ok=True)
    size = page.viewport_size
    if height:
        page.set_viewport_size({"width": size["width"], "height": height})
        page.wait_for_timeout(800)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if height:
        page.set_viewport_size(size)


def test_a_deep_link_first_gets_the_studio_navigation(studio_url, browser):
    """Runs first, on a fresh server: the first visitor arrives on /model, not on Home."""
    page = browser.new_page()
    page.goto(f"{studio_url}/model")
    wait_idle(page)
    page.get_by_text("Test accuracy").first.wait_for()
    nav = page.get_by_test_id("stSidebarNav")
    assert nav.get_by_text("Home", exact=True).count() == 1
    for helper in ("cache", "session", "widgets", "navigation"):  # modules in pages/, not pages
        assert nav.get_by_text(helper).count() == 0
    page.close()


def chart_shot(page, title: str, name: str) -> None:
    chart = page.locator(".js-plotly-plot").filter(has_text=title).first
    chart.scroll_into_view_if_needed()
    chart.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def click_a_point(page, chart) -> None:
    """Click the first point of the embedding's first panel, where plotly drew it."""
    position = chart.evaluate("""gd => {
        const i = gd._fullData.findIndex(t => t.xaxis === 'x' && t.x && t.x.length > 3 && t.x[0] !== null);
        const t = gd._fullData[i], xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const r = gd.getBoundingClientRect();
        return {x: r.left + xa._offset + xa.l2p(t.x[0]), y: r.top + ya._offset + ya.l2p(t.y[0])};
    }""")
    page.mouse.click(position["x"], position["y"])


def test_a_class_demo_end_to_end(studio_url, browser):
    """The demo's path with the default method, shortened to one epoch per stage in the Hyperparameters panel
    (the default demo's own length and timings are measured by benchmarks/studio_timings.py)."""
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
    for name in ("stage1_epochs", "stage2_epochs"):
        epochs = page.get_by_label(name, exact=True)
        if not epochs.is_visible():
            page.get_by_text("Hyperparameters").click()
        epochs.fill("1")
        epochs.press("Enter")
        page.wait_for_function(f"location.search.includes('{name}%3D1')", timeout=15_000)
        wait_idle(page)
    # a tuned learning rate reads with four significant digits and is still the default (not in the link)
    shown_lr = page.get_by_label("stage1_lr", exact=True).input_value()
    assert len(shown_lr.split("e")[0].replace(".", "").lstrip("0")) <= 4 and float(shown_lr) > 0, shown_lr
    assert "stage1_lr" not in page.evaluate("location.search")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("button", name="Stop training").wait_for(timeout=30_000)
    page.get_by_text("Losses per phase").first.wait_for(timeout=30_000)
    shot(page, "02_unlearn_running_light")
    page.get_by_text("finished in").wait_for(timeout=RUN_LIMIT_MS)
    wait_idle(page)
    shot(page, "03_unlearn_done_light")

    gap = page.get_by_test_id("stMetric").filter(has_text="Avg.Gap to Retrain")
    gap.wait_for(timeout=1_000)  # with the result: the shipped Retrain, no Retrain run
    assert gap.inner_text().split("\n")[-1].replace(".", "", 1).isdigit()

    page.get_by_role("link", name="Compare").first.click()
    wait_idle(page)
    for text in ("Penultimate features", "Test-set confusion", "what the MIA classifier sees"):
        page.get_by_text(text).first.wait_for(timeout=60_000)
    cells = page.get_by_test_id("stDataFrame").first.locator("td[role=gridcell]")  # the grid's accessible copy
    cells.first.wait_for(state="attached")
    texts = [t.strip() for t in cells.all_text_contents()]
    assert "Retrain (shipped)" in texts and "—" in texts and "None" not in texts, texts
    assert page.get_by_text("Traceback").count() == 0
    page.get_by_text("Penultimate features (UMAP").first.wait_for(timeout=120_000)
    wait_idle(page)
    chart = page.locator(".js-plotly-plot").first
    chart.scroll_into_view_if_needed()
    click_a_point(page, chart)
    page.get_by_text("Predicted probabilities").first.wait_for(timeout=30_000)
    wait_idle(page)
    page.get_by_text("train image #").first.wait_for()
    page.wait_for_timeout(1000)
    shot(page, "04_compare_light", height=4200)
    for theme in ("light", "dark"):
        page.emulate_media(color_scheme=theme)
        page.wait_for_timeout(1000)
        for name, title in (("embedding", "Penultimate features"), ("probabilities", "Predicted probabilities"),
                            ("confusion", "Test-set confusion"), ("mia", "what the MIA classifier sees")):
            chart_shot(page, title, f"05_{name}_{theme}")
    page.emulate_media(color_scheme="light")

    page.get_by_role("link", name="Saliency").click()
    page.get_by_text("Layer sizes").first.wait_for(timeout=60_000)
    wait_idle(page)
    assert page.get_by_text("kernels of 3×3").count() >= 1
    for theme in ("light", "dark"):
        page.emulate_media(color_scheme=theme)
        page.wait_for_timeout(800)
        chart_shot(page, "Saliency of", f"06_saliency_{theme}")
        chart_shot(page, "Layer sizes", f"06_layer_sizes_{theme}")
    page.get_by_role("link", name="Unlearn").click()
    wait_idle(page)
    page.wait_for_timeout(1000)
    shot(page, "07_unlearn_dark")
    context.close()


def test_a_shared_link_restores_the_choices_and_the_methods_view_compares_runs(studio_url, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, color_scheme="light")
    page = context.new_page()
    page.goto(f"{studio_url}/unlearn?forget=class:1&seed=0&method=ga&set=epochs=1&set=lr=0.02")
    wait_idle(page)
    page.get_by_text("Class to forget").wait_for()
    assert page.get_by_test_id("stRadio").filter(has_text="Class to forget").locator("input:checked").evaluate(
        "e => e.closest('label').innerText").strip() == "Trouser"
    method = page.get_by_test_id("stSelectbox").filter(has_text="Method")
    assert "GA — " in (method.text_content() + " ".join(method.locator("input").evaluate_all("es => es.map(e => e.value)")))
    page.get_by_text("Hyperparameters").click()
    assert page.get_by_label("epochs", exact=True).input_value() == "1"
    assert page.get_by_label("lr", exact=True).input_value() == "0.02"
    assert page.get_by_role("button", name="Stop training").count() == 0  # the link ran nothing
    shot(page, "08_shared_link_light", height=1800)

    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("GA on class:1 finished in").wait_for(timeout=RUN_LIMIT_MS)
    wait_idle(page)
    # a second method on the same forget set; the box is scrolled to first, since a list opened while the page
    # still scrolls closes again
    method = page.get_by_test_id("stSelectbox").filter(has_text="Method")
    method.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    method.click()
    page.get_by_role("option", name="BS — ").first.click()
    page.wait_for_function("location.search.includes('method=bs')", timeout=15_000)
    wait_idle(page)
    epochs = page.get_by_label("epochs", exact=True)
    if not epochs.is_visible():
        page.get_by_text("Hyperparameters").click()
    epochs.fill("1")
    epochs.press("Enter")
    page.wait_for_function("location.search.includes('epochs%3D1')",
                           timeout=15_000)  # the address bar follows the choices: it is the link to them
    wait_idle(page)
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("BS on class:1 finished in").wait_for(timeout=RUN_LIMIT_MS)
    wait_idle(page)

    page.get_by_role("link", name="Methods").click()
    wait_idle(page)
    page.get_by_text("Gap to Retrain per metric").first.wait_for(timeout=60_000)
    page.get_by_text("confusion minus Retrain").first.wait_for()
    assert page.get_by_text("Traceback").count() == 0
    for theme in ("light", "dark"):
        page.emulate_media(color_scheme=theme)
        page.wait_for_timeout(1000)
        shot(page, f"09_methods_{theme}", height=3200)
        for name, title in (("gaps", "Gap to Retrain per metric"), ("confusion_differences", "confusion minus"),
                            ("mia", "what the MIA classifier sees")):
            chart_shot(page, title, f"10_methods_{name}_{theme}")
    context.close()
