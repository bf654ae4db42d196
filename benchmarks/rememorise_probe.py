"""Random forgetting, then a closing phase of plain-image cross-entropy on D_r (docs/notes/unlearning-round-augmentation.md).

    PYTHONPATH=. python benchmarks/rememorise_probe.py --method wsscl --closing 1@0.01,2@0.01,3@0.01,2@0.003

A probe, not an option. The methods' augmented rounds leave D_r about 8 RA points under Retrain, who
memorises it. This asks whether a short closing phase on plain retain images (``EPOCHS@LR``, cosine decay,
batch 128, the original recipe's augmentation: none) brings D_r back while D_f stays forgotten. Each
method runs with its tuned random defaults on the tuning points only (split seeds 100 and 101, the subset
and digits, validation images), scored against the Retrain references in the study store, with the
untouched original's gap beside it.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from wsscl_core.engine import Phase, TrainRecipe, run_phases
from wsscl_core.methods import run_unlearning
from wsscl_core.metrics import avg_gap
from wsscl_core.runs import RunRequest, original_result, prepare, score
from wsscl_core.tune import TUNING_SEED, _reference_scores, open_settings, open_storage

TUNING_SEEDS = (TUNING_SEED, TUNING_SEED + 1)


def closing_phase(retain, epochs: int, lr: float) -> Phase:
    """The original recipe's kind of phase (plain images, batch 128, cosine), on D_r, without Nesterov or warm-up."""
    return TrainRecipe(epochs=epochs, lr=lr, nesterov=False, warmup_fraction=0.0).phase(
        retain, "Plain retain images", "rememorise")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="wsscl")
    parser.add_argument("--forget", default="random:0.1")
    parser.add_argument("--closing", default="1@0.01,2@0.01,3@0.01,2@0.003", help="EPOCHS@LR, comma-separated")
    parser.add_argument("--storage", default="sqlite:///tuning/studies.db", help="holds the Retrain references")
    args = parser.parse_args()
    closings = [(int(e), float(lr)) for e, lr in (item.split("@") for item in args.closing.split(","))]
    storage = open_storage(args.storage)
    gaps: dict[str, list[float]] = {}

    def line(name: str, scores: dict[str, float], reference: dict[str, float]) -> None:
        gap = avg_gap(scores, reference)
        gaps.setdefault(name, []).append(gap)
        cells = " ".join(f"{k} {scores[k]:6.2f}" for k in ("UA", "RA", "TA", "MIA"))
        print(f"  {name:14s} Avg.Gap {gap:6.3f}  {cells}", flush=True)

    for setting in open_settings(["fashion-mnist-subset", "digits"], None, Path("tuning"), "cpu"):
        ws = setting.ws
        for seed in TUNING_SEEDS:
            reference = _reference_scores(storage, setting, args.forget, seed, None)
            prepared = prepare(ws, RunRequest.parse(args.method, args.forget, None, seed, "val"))
            print(f"{setting.name}, split seed {seed}: Retrain " +
                  " ".join(f"{k} {reference[k]:.2f}" for k in ("UA", "RA", "TA", "MIA")), flush=True)
            line("original", original_result(ws, prepared.split, prepared.request).scores(), reference)
            unlearned = run_unlearning(args.method, ws.context(prepared.split, seed), prepared.config).model
            line(args.method, score(ws, unlearned, prepared.split, seed, "val").scores(), reference)
            for epochs, lr in closings:
                model = copy.deepcopy(unlearned)
                run_phases(model, ws.data, [closing_phase(prepared.split.retain, epochs, lr)], seed=seed)
                model.eval()
                line(f"+ {epochs}@{lr:g}", score(ws, model, prepared.split, seed, "val").scores(), reference)
    print("mean over the tuning points: " + ", ".join(f"{name} {sum(v) / len(v):.3f}" for name, v in gaps.items()))


if __name__ == "__main__":
    main()
