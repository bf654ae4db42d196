"""Where a class-forgetting run loses kept-class test accuracy: on test images it now calls the forgotten
class (which Retrain, trained without that class, never predicts), or on the kept classes among themselves
(docs/BENCHMARKS.md, class forgetting).

    PYTHONPATH=. python benchmarks/kept_class_errors.py --forget class:0 --methods wsscl,salun,retrain --seed 0
    PYTHONPATH=. python benchmarks/kept_class_errors.py --forget class:6,class:4 --methods retrain,wsscl,salun,cl \
        --seed 100 --holdout val

A diagnostic, not a tuning step: for the untouched original and each method (its defaults, on the shipped
original), it prints the kept-class accuracy on the held-out images, the share of kept-class images predicted
as the forgotten class, the kept-class accuracy once that class's output is ignored, and each class's
accuracy. ``--holdout val`` scores on the validation images instead of the reported test images, so classes
and seeds that no table reports can be checked without touching the reported set.
"""

from __future__ import annotations

import argparse

import torch

from wsscl_core.data import HOLDOUTS, ForgetSpec, Holdout
from wsscl_core.metrics import confusion_matrix, per_class_accuracy, predict_logits
from wsscl_core.models import Classifier
from wsscl_core.runs import RunRequest, run
from wsscl_core.workspace import Workspace, open_workspace


def kept_class_errors(ws: Workspace, model: Classifier, forgotten: list[int], holdout: Holdout = "test") -> str:
    """Kept-class TA, % of kept-class held-out images called a forgotten class, kept-class TA with those outputs
    ignored, and the accuracy on each class."""
    images = ws.data.holdout(holdout)
    logits, labels = predict_logits(model, images.images), images.labels
    kept = ~torch.isin(labels, torch.tensor(forgotten))
    predicted = logits.argmax(1)
    per_class = per_class_accuracy(confusion_matrix(logits, labels, ws.data.num_classes))
    called_forgotten = 100 * torch.isin(predicted[kept], torch.tensor(forgotten)).float().mean()
    logits[:, forgotten] = float("-inf")
    without = 100 * (logits.argmax(1)[kept] == labels[kept]).float().mean()
    accuracy = 100 * (predicted[kept] == labels[kept]).float().mean()
    return (f"kept-class TA {accuracy:.2f}, kept-class images called the forgotten class "
            f"{called_forgotten:.2f} %, kept-class TA with its output ignored {without:.2f}; per class "
            + " ".join(f"{value:.1f}" for value in per_class))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--forget", default="class:0")
    parser.add_argument("--methods", default="wsscl,salun,retrain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--holdout", choices=HOLDOUTS, default="test")
    args = parser.parse_args()
    ws = open_workspace(device="cpu")
    for forget in args.forget.split(","):
        forgotten = list(ForgetSpec.parse(forget, args.seed).classes)
        print(f"{forget} original: {kept_class_errors(ws, ws.original, forgotten, args.holdout)}", flush=True)
        for method in args.methods.split(","):
            result = run(ws, RunRequest.parse(method, forget, {}, args.seed, args.holdout))
            print(f"{forget} {method}: {kept_class_errors(ws, result.model, forgotten, args.holdout)}", flush=True)


if __name__ == "__main__":
    main()
