"""One method's values on the tuning objective's points, with the forgetting phase's stop rule on and off.

Usage: PYTHONPATH=. python benchmarks/forget_stop_probe.py METHOD '{"epochs": 10, "lr": 0.001}'
       [--forget random:0.1+random:0.5]

The points are those of ``tune`` (the subset and digits, its first two split seeds, validation images) and
Retrain's scores come from the study store, so nothing reported is touched. Learning rates are in the
defaults' units (scaled to each setting's original, as tune does). Prints every point and the mean Avg.Gap
per rule (docs/notes/forget-stop-rule.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from wsscl_core import tune
from wsscl_core.metrics import avg_gap
from wsscl_core.runs import RunRequest, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method")
    parser.add_argument("values", type=json.loads, help="the method's hyperparameters as JSON")
    parser.add_argument("--forget", default="random:0.1+random:0.5")
    parser.add_argument("--storage", default=tune.DEFAULT_STORAGE)
    args = parser.parse_args()
    storage = tune.open_storage(args.storage)
    settings = tune.open_settings(["fashion-mnist-subset", "digits"], None, Path("tuning"), "cpu")
    seeds = [tune.TUNING_SEED, tune.TUNING_SEED + 1]
    for rule in ("holdout", "off"):
        gaps, began = {}, time.perf_counter()
        for key, forget_set, setting, seed in tune._objective_points(args.forget, settings, seeds):
            reference = tune._reference_scores(storage, setting, forget_set, seed, None)
            values = {**tune.scale_learning_rates(args.values, setting.ws.recipe.lr), "forget_stop": rule}
            scores = run(setting.ws, RunRequest.parse(args.method, forget_set, values, seed, "val")).scores()
            gaps[key] = avg_gap(scores, reference)
            shown = ", ".join(f"{k} {scores[k]:.1f}" for k in ("UA", "RA", "TA", "MIA"))
            print(f"{rule:8s} {key:40s} {shown}  Avg.Gap {gaps[key]:.2f}", flush=True)
        print(f"{args.method} {json.dumps(args.values)} forget_stop={rule}: mean Avg.Gap "
              f"{sum(gaps.values()) / len(gaps):.3f} ({time.perf_counter() - began:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
