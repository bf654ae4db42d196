"""Grid search of unlearning hyperparameters by Avg.Gap to Retrain (results go to docs/TUNING.md).

    python benchmarks/tune.py --methods wsscl,salun --forget random:0.1 --seed 0

Retrain is run once per (checkpoint, forget spec, seed) and its scores are cached under
``--cache`` so repeated grids only pay for the methods. Each grid point is printed as it
finishes, then the best point per method by Avg.Gap (ties: the faster one).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from pathlib import Path

import torch

from wsscl_core.data import ForgetSpec, make_forget_split
from wsscl_core.methods import make_config, run_unlearning
from wsscl_core.metrics import avg_gap, evaluate
from wsscl_core.workspace import Workspace, open_workspace

LR_GRID = {"lr": [0.003, 0.01, 0.03]}
TWO_STAGE_GRID = {"stage1_lr": [0.01, 0.03], "stage2_lr": [0.01, 0.03]}
GRIDS: dict[str, dict[str, list]] = {
    "rl": {"epochs": [2, 3], **LR_GRID},
    "salun": {"epochs": [2, 3], "lr": [0.013, 0.03]},
    "ga": {"lr": [1e-4, 1e-3, 3e-3]},
    "l1_sparse": {"alpha": [1e-4, 5e-4, 2e-3]},
    "iu": {"alpha": [1.0, 5.0, 20.0]},
    "bs": {"lr": [1e-4, 1e-3, 1e-2]},
    "be": {"lr": [1e-4, 1e-3, 1e-2]},
    "cl": TWO_STAGE_GRID,
    "wscl": TWO_STAGE_GRID,
    "wsscl": {**TWO_STAGE_GRID, "mask_normalisation": ["global", "density", "literal"]},
}


def grid_points(grid: dict[str, list]) -> list[dict]:
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def retrain_scores(ws: Workspace, forget: str, seed: int, cache_dir: Path) -> dict:
    """Retrain's scores, time (``rte_s``) and per-class test accuracy for this split and seed, cached on disk."""
    key = hashlib.sha256(json.dumps([ws.data.fingerprint(), ws.metadata.get("train_seconds"), forget, seed,
                                     ws.recipe.to_dict()]).encode()).hexdigest()[:16]
    path = cache_dir / f"retrain_{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    split = make_forget_split(ws.data.train.labels, ForgetSpec.parse(forget, seed), ws.data.num_classes)
    out = run_unlearning("retrain", ws.context(split, seed))
    ev = evaluate(out.model, ws.data, split, seed=seed)
    scores = {**ev.scores(), "rte_s": out.seconds, "per_class_test": [float(v) for v in ev.per_class_test]}
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(scores))
    return scores


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=",".join(GRIDS), help="comma list of methods to tune")
    p.add_argument("--forget", default="random:0.1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default=None, help="original model (default: the shipped one)")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=V1,V2",
                   help="replace one axis of a method's grid")
    p.add_argument("--cache", default="runs/tune-cache")
    p.add_argument("--out", default="runs/tune-results.jsonl", help="one JSON line per grid point (appended)")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    ws = open_workspace(args.checkpoint, device="cpu")
    split = make_forget_split(ws.data.train.labels, ForgetSpec.parse(args.forget, args.seed), ws.data.num_classes)
    reference = retrain_scores(ws, args.forget, args.seed, Path(args.cache))
    print(f"Retrain {args.forget} seed {args.seed}: "
          + " ".join(f"{k} {v:.2f}" for k, v in reference.items() if isinstance(v, float)))
    grids = {m: dict(GRIDS.get(m, {})) for m in args.methods.split(",")}
    for item in args.set:
        key, _, values = item.partition("=")
        method, _, field = key.partition(".")
        grids[method][field] = [v for v in values.split(",")]
    with open(args.out, "a") as log:
        for method, grid in grids.items():
            results = []
            for point in grid_points(grid):
                out = run_unlearning(method, ws.context(split, args.seed), make_config(method, point, split.scenario))
                scores = evaluate(out.model, ws.data, split, seed=args.seed).scores()
                gap = avg_gap(scores, reference)
                results.append((gap, out.seconds, point))
                line = {"method": method, "forget": args.forget, "seed": args.seed, "point": point,
                        "scores": scores, "avg_gap": gap, "rte_s": out.seconds}
                log.write(json.dumps(line) + "\n")
                log.flush()
                print(f"{method:10s} {json.dumps(point):70s} gap {gap:6.2f}  "
                      + " ".join(f"{k} {v:6.2f}" for k, v in scores.items()) + f"  {out.seconds:5.1f}s", flush=True)
            gap, seconds, point = min(results, key=lambda r: (round(r[0], 2), r[1]))
            print(f"BEST {method}: {json.dumps(point)} gap {gap:.2f} ({seconds:.1f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
