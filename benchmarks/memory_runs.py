"""Resident memory of the studio's run machinery over repeated default runs.

Runs the default unlearning request N times through one session's job manager (as the Unlearn
page does, keeping its bounded history) and prints the process RSS after each run.

    python benchmarks/memory_runs.py [--runs 10] [--method wsscl]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from wsscl_core.data import ForgetSpec  # noqa: E402
from wsscl_core.studio.jobs import SessionJobs, UnlearnRequest, prepare_run, unlearn_work  # noqa: E402
from wsscl_core.workspace import open_workspace  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--method", default="wsscl")
    args = parser.parse_args()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))  # as the studio does
    ws = open_workspace()
    jobs = SessionJobs(heartbeat_timeout_s=None)
    print(f"start: RSS {rss_mb():.0f} MB")
    readings = []
    for i in range(args.runs):
        prepared = prepare_run(ws, UnlearnRequest(ForgetSpec("class", (i % ws.data.num_classes,)), args.method))
        start = time.perf_counter()
        job = jobs.start("unlearn", f"run {i + 1}", unlearn_work(ws, prepared))
        job.wait()
        gc.collect()
        readings.append(rss_mb())
        print(f"run {i + 1:2d}: {job.status}, {time.perf_counter() - start:5.1f} s, RSS {readings[-1]:.0f} MB, "
              f"runs kept {len(jobs.history)}", flush=True)
    kept = jobs.history.maxlen
    after_full = readings[kept - 1:]
    print(f"RSS once the history is full (runs {kept}..{len(readings)}): min {min(after_full):.0f} MB, "
          f"max {max(after_full):.0f} MB; history keeps {kept} runs")


if __name__ == "__main__":
    main()
