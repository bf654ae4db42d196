"""Which forget images a class-forgetting run still classifies correctly, and which phase left them (docs/BENCHMARKS.md).

    PYTHONPATH=. python benchmarks/forget_residue.py --method wsscl --forget class:3 --seeds 0,1 --set stage2_epochs=0

A diagnostic of the reported splits, not a tuning step: for each seed it runs the method with its defaults (and,
with ``--set``, once more with those values on top, e.g. a two-stage method stopped after stage 1) and prints
UA and RA and every forget image whose prediction is still its own class, with the probability the model gives
that class, against the untouched original's.
"""

from __future__ import annotations

import argparse

from wsscl_core.metrics import predict_logits
from wsscl_core.runs import RunRequest, run
from wsscl_core.workspace import Workspace, open_workspace


def residue(ws: Workspace, method: str, forget: str, seed: int, overrides: dict[str, str]) -> str:
    """One run's UA / RA and its forget images still predicted as their label (train index, p(label) now and in
    the original)."""
    result = run(ws, RunRequest.parse(method, forget, overrides, seed))
    images, labels = ws.data.train.images[result.split.forget], ws.data.train.labels[result.split.forget]
    now = predict_logits(result.model, images).softmax(1)
    before = predict_logits(ws.original, images).softmax(1)
    kept = (now.argmax(1) == labels).nonzero().flatten().tolist()
    scores = result.scores()
    lines = [f"{method} {overrides or 'defaults'} seed {seed}: UA {scores['UA']:.2f}, RA {scores['RA']:.2f}, "
             f"{len(kept)} of {len(labels)} forget images still right"]
    lines += [f"  train index {int(result.split.forget[i])}: p(label) {now[i, labels[i]]:.3f} "
              f"(original {before[i, labels[i]]:.3f})" for i in kept]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="wsscl")
    parser.add_argument("--forget", default="class:3")
    parser.add_argument("--seeds", default="0,1", help="comma list of split and run seeds")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="values for a second run per seed, on top of the defaults")
    args = parser.parse_args()
    changed = dict(item.split("=", 1) for item in args.set)  # the configs read text values
    ws = open_workspace(None, device="cpu")
    for seed in (int(s) for s in args.seeds.split(",")):
        for overrides in ([{}, changed] if changed else [{}]):
            print(residue(ws, args.method, args.forget, seed, overrides), flush=True)


if __name__ == "__main__":
    main()
