"""WSS-CL's class forgetting with stage 2's retain round before its forget round in each epoch (docs/BENCHMARKS.md).

    PYTHONPATH=. python benchmarks/stage2_order_probe.py --order retain-first --classes 5,2,3,7,0

A probe, not an option: the defaults were tuned with the forget round first, so this only asks whether ending
each stage-2 epoch on the contrastive forget round keeps the last forget images forgotten, and at what cost.
Scores each class (seed 0) against the shipped Retrain reference of that split, with the untouched original's
gap beside it (the row every method must beat).
"""

from __future__ import annotations

import argparse

from wsscl_core.methods import contrastive
from wsscl_core.metrics import avg_gap
from wsscl_core.runs import RunRequest, original_result, run
from wsscl_core.studio.references import load_references
from wsscl_core.workspace import open_workspace


def retain_round_first() -> None:
    """Reverse the rounds of stage 2 in every two-stage method built from here on."""
    forget_first = contrastive.two_stage_phases

    def phases(ctx, cfg, mask):
        built = forget_first(ctx, cfg, mask)
        for phase in built:
            if phase.name == "stage2":
                phase.rounds.reverse()
        return built

    contrastive.two_stage_phases = phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--order", choices=("forget-first", "retain-first"), default="retain-first")
    parser.add_argument("--classes", default="5,2,3,7,0")
    parser.add_argument("--method", default="wsscl")
    args = parser.parse_args()
    if args.order == "retain-first":
        retain_round_first()
    ws = open_workspace()
    references = load_references(ws)
    for label in args.classes.split(","):
        result = run(ws, RunRequest.parse(args.method, f"class:{label}", {}, 0))
        reference = references.get(ws, result.split, 0)
        scores, target = result.scores(), reference.scores()
        untouched = original_result(ws, result.split, result.request).scores()
        print(f"{args.order} class {label}: Avg.Gap {avg_gap(scores, target):.3f} (original "
              f"{avg_gap(untouched, target):.3f}), UA {scores['UA']:.2f}, "
              f"RA {scores['RA']:.2f}, kept-class TA {scores['TA_remaining']:.2f} "
              f"(Retrain UA {target['UA']:.2f}, RA {target['RA']:.2f}, kept-class TA {target['TA_remaining']:.2f})",
              flush=True)


if __name__ == "__main__":
    main()
