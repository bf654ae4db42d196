"""What round options do to UA, RA, TA and MIA at one tuning point (docs/notes/unlearning-round-augmentation.md).

    PYTHONPATH=. python benchmarks/round_options_probe.py --methods wsscl,ft --forget random:0.1 --seed 101 \
        --set augment_rounds=false --set schedule=cosine

Scores Retrain, the untouched original, and each method with its defaults and then with the ``--set`` values
on top, on one split from the tuning seeds and the validation images, so nothing a table reports is used.
"""

from __future__ import annotations

import argparse

from wsscl_core.runs import RunRequest, RunResult, original_result, prepare, run
from wsscl_core.tune import TUNING_SEED
from wsscl_core.workspace import open_workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="wsscl,ft")
    parser.add_argument("--forget", default="random:0.1")
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="round options to compare")
    args = parser.parse_args()
    if args.seed < TUNING_SEED:
        parser.error(f"use a tuning seed (from {TUNING_SEED}), never a reported one")
    changed = dict(item.split("=", 1) for item in args.set)  # the configs read text values
    ws = open_workspace(None, device="cpu")

    def show(name: str, result: RunResult) -> None:
        scores = result.scores()
        print(f"{name:40s} " + "  ".join(f"{key} {scores[key]:6.2f}" for key in ("UA", "RA", "TA", "MIA")), flush=True)

    request = RunRequest.parse("retrain", args.forget, None, args.seed, "val")
    show("Retrain", run(ws, request))
    show("Original (no unlearning)", original_result(ws, prepare(ws, request).split, request))
    for method in args.methods.split(","):
        show(f"{method} defaults", run(ws, RunRequest.parse(method, args.forget, None, args.seed, "val")))
        show(f"{method} with {changed}", run(ws, RunRequest.parse(method, args.forget, changed, args.seed, "val")))


if __name__ == "__main__":
    main()
