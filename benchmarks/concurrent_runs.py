"""A class of N students pressing Run at once on one studio server, through the studio's own job manager.

    python benchmarks/concurrent_runs.py --sessions 30 [--cap 1] [--stop-every 5]

Each session has its own ``SessionJobs`` (as each browser tab does) and starts a short FT run on the
digits set; every ``--stop-every``-th session presses Stop while waiting. Prints the most runs seen going at
once (must not exceed the cap), how many waited, how every job ended, the wall time and the peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from wsscl_core.data import ForgetSpec, load_dataset  # noqa: E402
from wsscl_core.engine import TrainRecipe  # noqa: E402
from wsscl_core.studio.jobs import SessionJobs, UnlearnRequest, prepare_run, unlearn_work  # noqa: E402
from wsscl_core.studio.slots import RunSlots, default_cap  # noqa: E402
from wsscl_core.workspace import Workspace, train_original  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=30)
    ap.add_argument("--cap", type=int, default=default_cap())
    ap.add_argument("--stop-every", type=int, default=5, help="every k-th session presses Stop while it waits")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("digits")
    model, meta = train_original(data, "compact", TrainRecipe(epochs=3, batch_size=64), device="cpu")
    ws = Workspace(data, model, meta, "compact", TrainRecipe.from_dict(meta["recipe"]), torch.device("cpu"))
    slots = RunSlots(args.cap)
    prepared = prepare_run(ws, UnlearnRequest(ForgetSpec("class", (3,)), "ft", {"epochs": 1}))
    peak, done = [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], slots.running)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    began = time.perf_counter()
    sessions = [SessionJobs(heartbeat_timeout_s=None, slots=slots) for _ in range(args.sessions)]
    jobs = [s.start("unlearn", f"student {i}", unlearn_work(ws, prepared)) for i, s in enumerate(sessions)]
    time.sleep(0.5)
    waited = sum(1 for j in jobs if j.place_in_line > 0)
    for i, job in enumerate(jobs):
        if args.stop_every and i % args.stop_every == args.stop_every - 1 and job.place_in_line > 0:
            job.stop()
    for job in jobs:
        job.wait(600)
    done.set()
    statuses = {s: sum(j.status == s for j in jobs) for s in ("done", "cancelled", "failed", "running")}
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.sessions} sessions, cap {args.cap}: at most {peak[0]} running at once; {waited} waited in line; "
          f"ended {statuses}; {time.perf_counter() - began:.1f} s; peak RSS {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
