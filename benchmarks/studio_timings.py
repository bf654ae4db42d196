"""Studio timings: app start to usable Home, Run to first live chart point, a default run with
metrics, Avg.Gap after the run (shipped Retrain), UMAP warm-up, the UMAP view of a finished run,
and Stop (in process, and in the browser from the click to the page saying so).

    python benchmarks/studio_timings.py                     # in-process measurements + the browser ones
    python benchmarks/studio_timings.py --no-browser
    python benchmarks/studio_timings.py --browser-only --root DIR   # the browser part on another checkout
    python benchmarks/studio_timings.py --cold-numba-cache  # as on a machine whose numba cache is empty
    python benchmarks/studio_timings.py --browser-only --demo-only --root DIR  # the demo alone, for A/B pairs

The in-process part does what the app does (same thread count, UMAP warming up in its worker
process while the run trains); the browser part starts ``streamlit run app.py`` (a fresh server)
and drives Debian's Chromium with Playwright: the default demo, then Compare until the UMAP view is
drawn, then the demo again from Home, stopped 5 s in. Times in the page come from the page's own
clock (MutationObservers), so Playwright's polling does not add to them. The CPU seconds the server and
Chromium's renderer used until the demo ended, and from the click to its end, are read from /proc (the
browser's share of a 2-core CPU is time the training does not get).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.py does, before torch loads
import numpy as np  # noqa: E402
import torch  # noqa: E402

from wsscl_core.studio import embed, references  # noqa: E402
from wsscl_core.data import ForgetSpec  # noqa: E402
from wsscl_core.studio.compare import sample_views  # noqa: E402
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
# Installed before the click: when the run's end and its Avg.Gap first show (the page's clock, ms since the click).
WATCH_RESULT = """() => {
  const t0 = performance.now();
  new MutationObserver((_, observer) => {
    const text = document.body.innerText;
    const metrics = [...document.querySelectorAll('[data-testid="stMetric"]')].map(e => e.innerText);
    if (window.__finished === undefined && text.includes('finished in')) window.__finished = performance.now() - t0;
    if (window.__avgGap === undefined && metrics.some(m => m.includes('Avg.Gap to Retrain') && /\d/.test(m)))
      window.__avgGap = performance.now() - t0;
    if (window.__finished !== undefined && window.__avgGap !== undefined) observer.disconnect();
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""
# Installed just before pressing Stop: when the page first says the run stopped (ms since the click).
WATCH_STOPPED = """() => {
  const t0 = performance.now();
  new MutationObserver((_, observer) => {
    if (document.body.innerText.includes('Stopped: the original model is unchanged')) {
      window.__stopped = performance.now() - t0;
      observer.disconnect();
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""
# Installed before opening Compare: when the UMAP view is first drawn (ms since the click on Compare).
WATCH_UMAP = """() => {
  const t0 = performance.now();
  new MutationObserver((_, observer) => {
    const titles = [...document.querySelectorAll('.js-plotly-plot .gtitle')].map(e => e.textContent);
    if (titles.some(t => t.startsWith('Penultimate features (UMAP'))) {
      window.__umap = performance.now() - t0;
      observer.disconnect();
    }
  }).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


def in_process() -> dict[str, float]:
    warm_start = time.perf_counter()
    embed.start_warm_up()
    ws = open_workspace()
    spec = ForgetSpec("class", (1,))
    prepared = prepare_run(ws, UnlearnRequest(spec, "wsscl"))
    refs = references.load_references(ws)
    load_times = []

    def shipped():
        began = time.perf_counter()
        result = refs.get(ws, prepared.split, 0)
        load_times.append(time.perf_counter() - began)
        return result

    start = time.perf_counter()
    job = SessionJobs(heartbeat_timeout_s=None).start("unlearn", "default", unlearn_work(ws, prepared, shipped))
    first_point = None
    while job.alive:
        if first_point is None and any(e.event.kind == "step" for e in job.events):
            first_point = time.perf_counter() - start
        time.sleep(0.01)
    total = time.perf_counter() - start
    assert job.status == "done", job.error
    record = job.result
    assert record.retrain is not None, "no shipped Retrain for the default demo's forget set"
    while not embed.umap_ready():
        time.sleep(0.1)
    warm = time.perf_counter() - warm_start
    view_start = time.perf_counter()
    sample = sample_views(ws, record, record.retrain)
    features_s = time.perf_counter() - view_start
    embedding = embed.submit_umap(sample.features()).result()
    view_s = time.perf_counter() - view_start
    stop_latency = stop_latencies(ws, prepared)
    return {"run_to_first_step_event_s": first_point, "default_wsscl_run_with_metrics_s": total,
            "of_which_unlearning_rte_s": record.unlearned.rte_s,
            "of_which_shipped_retrain_load_s": load_times[0],
            "avg_gap_to_shipped_retrain": record.gap(),
            "umap_warm_up_s (worker, during the run)": embed.warm_up_seconds,
            "umap_warm_up_wall_from_start_s": warm, "umap_points": float(len(sample.index)),
            "views_features_3_models_s": features_s,
            "umap_original_unlearned_retrain_s": view_s, "umap_fit_transform_only_s": embedding.seconds,
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


def cpu_seconds(processes: str) -> float:
    """CPU seconds (user + system) used so far by the live processes whose command line contains
    ``processes`` (Linux /proc; 0 where it cannot be read)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and processes in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:  # the process ended meanwhile
            continue
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_browser(root: Path = ROOT, cold_numba_cache: bool = False,
               demo_only: bool = False) -> dict[str, float | None]:
    """A fresh ``streamlit run app.py`` in ``root``: the default demo, then (unless ``demo_only``) Compare until
    UMAP is drawn, then the demo again, stopped."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    port = free_port()
    idle = '[data-testid="stApp"][data-test-script-state="notRunning"]'
    env = {**os.environ, "PYTHONPATH": str(root)}
    if cold_numba_cache:  # numba then finds no cached code and compiles UMAP's again
        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba-cold-")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--disable-sync", "--no-first-run"])
        start = time.perf_counter()
        server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                   "--server.port", str(port), "--server.address", "127.0.0.1"], cwd=root,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
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
            page.evaluate(WATCH_RESULT)
            server_cpu_at_click = cpu_seconds(f"--server.port {port}")
            renderer_cpu_at_click = cpu_seconds("--type=renderer")
            clicked = time.perf_counter()
            page.get_by_role("button", name="Run the default demo").click()
            page.wait_for_function("window.__firstLivePoint !== undefined", timeout=60_000)
            first_chart = time.perf_counter() - clicked
            first_chart_in_page = page.evaluate("window.__firstLivePoint") / 1000
            page.get_by_text("finished in").wait_for(timeout=300_000)
            run_done = time.perf_counter() - clicked
            # since the server and Chromium started: Home, then the demo
            server_cpu = cpu_seconds(f"--server.port {port}")
            renderer_cpu = cpu_seconds("--type=renderer")
            demo = {"click_to_run_finished_on_screen_s": run_done,
                    "server_cpu_s_click_to_run_finished": server_cpu - server_cpu_at_click,
                    "chromium_renderer_cpu_s_click_to_run_finished": renderer_cpu - renderer_cpu_at_click}
            if demo_only:
                return {"click_to_first_live_chart_point_s": first_chart_in_page, **demo}
            try:
                page.wait_for_function("window.__avgGap !== undefined", timeout=5_000)
                gap_after_end = (page.evaluate("window.__avgGap") - page.evaluate("window.__finished")) / 1000
            except PlaywrightTimeout:  # a studio without Retrain references shows no Avg.Gap here
                gap_after_end = None
            page.wait_for_selector(idle)
            page.evaluate(WATCH_UMAP)
            compare_clicked = time.perf_counter()
            page.get_by_role("link", name="Compare").first.click()
            page.wait_for_function("window.__umap !== undefined", timeout=300_000)
            umap_after_compare = page.evaluate("window.__umap") / 1000
            umap_since_start = compare_clicked - start + umap_after_compare
            stop_on_screen = stop_in_browser(page, idle)
        finally:
            server.terminate()
            server.wait(10)
            browser.close()
            if cold_numba_cache:
                shutil.rmtree(env["NUMBA_CACHE_DIR"], ignore_errors=True)
    return {"app_start_to_usable_home_s": home, "app_start_to_home_chart_drawn_s": home_chart,
            "click_to_first_live_chart_point_s": first_chart_in_page,
            "click_to_first_live_chart_point_seen_by_playwright_s": first_chart,
            **demo,
            "run_finished_to_avg_gap_on_screen_s": gap_after_end,
            "server_cpu_s_to_run_finished (training, app)": server_cpu,
            "chromium_renderer_cpu_s_to_run_finished": renderer_cpu,
            "compare_opened_to_umap_drawn_s": umap_after_compare,
            "app_start_to_umap_drawn_s": umap_since_start,
            "stop_clicked_to_stopped_on_screen_s (default demo, 5 s in)": stop_on_screen}


def stop_in_browser(page, idle: str, after_s: float = 5.0) -> float:
    """From Home, start the default demo again, press Stop ``after_s`` seconds in, and time (the page's
    clock) until the page says the run stopped."""
    page.get_by_role("link", name="Home").first.click()
    page.wait_for_selector(idle)
    page.get_by_role("button", name="Run the default demo").click()
    stop = page.get_by_role("button", name="Stop training")
    stop.wait_for(timeout=60_000)
    time.sleep(after_s)
    page.evaluate(WATCH_STOPPED)
    stop.click()
    page.wait_for_function("window.__stopped !== undefined", timeout=60_000)
    return page.evaluate("window.__stopped") / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--browser-only", action="store_true")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose app.py the browser part runs")
    parser.add_argument("--cold-numba-cache", action="store_true",
                        help="the browser part with an empty numba cache (a machine's first start)")
    parser.add_argument("--demo-only", action="store_true", help="the browser part ends with the default demo")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    results = {} if args.browser_only else in_process()
    if not args.no_browser and Path(CHROMIUM).exists():
        results.update(in_browser(args.root.resolve(), args.cold_numba_cache, args.demo_only))
    print(f"CPU threads {torch.get_num_threads()}, cores {os.cpu_count()}, load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after; niceness {os.nice(0)}; app from {args.root.resolve()}")
    for name, value in results.items():
        print(f"{name:45s} {value:8.2f}" if isinstance(value, float) and not np.isnan(value) else f"{name:45s} {value}")


if __name__ == "__main__":
    main()
