"""Studio timings: app start to usable Home, Run to first live chart point, a default run with
metrics, UMAP warm-up, and the UMAP view of a finished run.

    python benchmarks/studio_timings.py            # in-process measurements + the browser ones
    python benchmarks/studio_timings.py --no-browser

The in-process part does what the app does (same thread count, UMAP warming up in its worker
process while the run trains); the browser part starts ``streamlit run app.py`` and drives
Debian's Chromium with Playwright.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from wsscl_core.studio import embed  # noqa: E402
from wsscl_core.data import ForgetSpec  # noqa: E402
from wsscl_core.studio.jobs import SessionJobs, UnlearnRequest, prepare_run, unlearn_work  # noqa: E402
from wsscl_core.workspace import open_workspace  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
# Installed just before the click: the page's own clock at the first mutation that shows a trace of the
# live chart on the Unlearn page (Playwright's polling adds up to ~1 s to what the user sees).
WATCH_FIRST_LIVE_POINT = """() => {
  const t0 = performance.now();
  new MutationObserver((_, observer) => {
    if (location.pathname.includes('unlearn') && document.querySelector('.js-plotly-plot .scatterlayer .trace')) {
      window.__firstLivePoint = performance.now() - t0;
      observer.disconnect();
    }
  }).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


def in_process() -> dict[str, float]:
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))  # as the studio does
    warm_start = time.perf_counter()
    embed.start_warm_up()
    ws = open_workspace()
    prepared = prepare_run(ws, UnlearnRequest(ForgetSpec("class", (1,)), "wsscl"))
    start = time.perf_counter()
    job = SessionJobs(heartbeat_timeout_s=None).start("unlearn", "default", unlearn_work(ws, prepared))
    first_point = None
    while job.alive:
        if first_point is None and any(e.event.kind == "step" for e in job.events):
            first_point = time.perf_counter() - start
        time.sleep(0.01)
    total = time.perf_counter() - start
    assert job.status == "done", job.error
    record = job.result
    while not embed.umap_ready():
        time.sleep(0.1)
    warm = time.perf_counter() - warm_start
    view_start = time.perf_counter()
    index = embed.stratified_sample(ws.data.train.labels, record.split.forget)
    images = ws.data.train.images[torch.as_tensor(index)]
    features = {"before": embed.model_view(ws.original, images).features,
                "after": embed.model_view(record.unlearned.model, images).features}
    embedding = embed.aligned_embedding(features, projection="umap")
    view_s = time.perf_counter() - view_start
    stop_latency = stop_latencies(ws, prepared)
    return {"run_to_first_step_event_s": first_point, "default_wsscl_run_with_metrics_s": total,
            "of_which_unlearning_rte_s": record.unlearned.rte_s,
            "umap_warm_up_s (worker, during the run)": embed.warm_up_seconds,
            "umap_warm_up_wall_from_start_s": warm, "umap_points": float(len(index)),
            "umap_before_after_s": view_s, "umap_fit_transform_only_s": embedding.seconds,
            **stop_latency}


def stop_latencies(ws, prepared, delays_s=(0.5, 2.0, 5.0)) -> dict[str, float]:
    """Seconds from Stop to the worker thread's end, pressed at several moments of a default run."""
    results = {}
    for delay in delays_s:
        job = SessionJobs(heartbeat_timeout_s=None).start("unlearn", "to stop", unlearn_work(ws, prepared))
        time.sleep(delay)
        stage, pressed = job.stage, time.perf_counter()
        job.stop()
        job.wait()
        results[f"stop_latency_at_{delay:g}s ({stage})"] = time.perf_counter() - pressed
    return results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_browser() -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    port = free_port()
    idle = '[data-testid="stApp"][data-test-script-state="notRunning"]'
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--disable-sync", "--no-first-run"])
        start = time.perf_counter()
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                   "--server.port", str(port), "--server.address", "127.0.0.1"], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}", timeout=2000)
                    break
                except Exception:
                    time.sleep(0.1)
            page.get_by_role("button", name="Run the default demo").wait_for(timeout=60_000)
            home = time.perf_counter() - start
            page.wait_for_selector(idle)
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)  # Home's chart: plotly.js is loaded
            home_chart = time.perf_counter() - start
            page.evaluate(WATCH_FIRST_LIVE_POINT)
            clicked = time.perf_counter()
            page.get_by_role("button", name="Run the default demo").click()
            page.wait_for_function("window.__firstLivePoint !== undefined", timeout=60_000)
            first_chart = time.perf_counter() - clicked
            first_chart_in_page = page.evaluate("window.__firstLivePoint") / 1000
            page.get_by_text("finished in").wait_for(timeout=300_000)
            run_done = time.perf_counter() - clicked
        finally:
            server.terminate()
            server.wait(10)
            browser.close()
    return {"app_start_to_usable_home_s": home, "app_start_to_home_chart_drawn_s": home_chart,
            "click_to_first_live_chart_point_s": first_chart_in_page,
            "click_to_first_live_chart_point_seen_by_playwright_s": first_chart,
            "click_to_run_finished_on_screen_s": run_done}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    results = in_process()
    if not args.no_browser and Path(CHROMIUM).exists():
        results.update(in_browser())
    print(f"CPU threads {torch.get_num_threads()}, cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    for name, value in results.items():
        print(f"{name:45s} {value:8.2f}" if isinstance(value, float) and not np.isnan(value) else f"{name:45s} {value}")


if __name__ == "__main__":
    main()
