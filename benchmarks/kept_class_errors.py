"""Where a class-forgetting run loses kept-class test accuracy: on test images it now calls the forgotten
class (which Retrain, trained without that class, never predicts), or on the kept classes among themselves
(docs/BENCHMARKS.md, class forgetting).

    PYTHONPATH=. python benchmarks/kept_class_errors.py --forget class:0 --methods wsscl,salun,retrain --seed 0

A diagnostic of the reported splits, not a tuning step: for the untouched original and each method (its
defaults, on the shipped original), it prints the kept-class test accuracy, the share of kept-class test
images predicted as the forgotten class, and the kept-class accuracy once that class's output is ignored.
"""

from __future__ import annotations

import argparse

import torch

from wsscl_core.data import ForgetSpec
from wsscl_core.metrics import predict_logits
from wsscl_core.models import Classifier
from wsscl_core.runs import RunRequest, run
from wsscl_core.workspace import Workspace, open_workspace


def kept_class_errors(ws: Workspace, model: Classifier, forgotten: list[int]) -> str:
    """Kept-class TA, % of kept-class test images called a forgotten class, kept-class TA with those outputs
    ignored."""
    logits, labels = predict_logits(model, ws.data.test.images), ws.data.test.labels
    kept = ~torch.isin(labels, torch.tensor(forgotten))
    predicted = logits.argmax(1)
    called_forgotten = 100 * torch.isin(predicted[kept], torch.tensor(forgotten)).float().mean()
    logits[:, forgotten] = float("-inf")
    without = 100 * (logits.argmax(1)[kept] == labels[kept]).float().mean()
    accuracy = 100 * (predicted[kept] == labels[kept]).float().mean()
    return (f"kept-class TA {accuracy:.2f}, kept-class test images called the forgotten class "
            f"{called_forgotten:.2f} %, kept-class TA with its output ignored {without:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--forget", default="class:0")
    parser.add_argument("--methods", default="wsscl,salun,retrain")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ws = open_workspace(device="cpu")
    forgotten = list(ForgetSpec.parse(args.forget, args.seed).classes)
    print(f"original: {kept_class_errors(ws, ws.original, forgotten)}", flush=True)
    for method in args.methods.split(","):
        result = run(ws, RunRequest.parse(method, args.forget, {}, args.seed))
        print(f"{method}: {kept_class_errors(ws, result.model, forgotten)}", flush=True)


if __name__ == "__main__":
    main()
