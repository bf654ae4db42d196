"""Does a class-forgetting run forget the class in its features, or only in its outputs? A linear probe asks.

    PYTHONPATH=. python benchmarks/feature_probe.py --forget class:0 --methods retrain,wsscl,salun,cl --seed 0

For the untouched original, the original with only the forgotten class's output hidden
(``benchmarks/output_masking.py``) and each method's run (its defaults, on ``--checkpoint``, default the
shipped original), a fresh linear classifier is fitted on the penultimate features of half of the validation
images (every class, the forgotten one included, as someone holding labelled images of it would) and scored
on the other half. Retrain's features never learnt the class, so its probe accuracy on the forgotten class is the
target; the original's is what forgetting in the features has to undo. UA, MIA and kept-class TA read the
outputs only, so they score hiding the output as forgetting; this probe does not. Only validation images are
used (on a dataset without its own, the half of the test images that ``holdout("val")`` lends).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks.output_masking import MASKED_LABEL, masked_original
from wsscl_core.data import ForgetSpec, ImageSet
from wsscl_core.metrics import predict_features, predict_logits
from wsscl_core.models import Classifier
from wsscl_core.runs import ORIGINAL_LABEL, RunRequest, run
from wsscl_core.workspace import Workspace, open_workspace

PROBE_SEED = 0  # the fixed draw that halves the validation images into probe-fit and probe-score images


def probe_halves(ws: Workspace) -> tuple[ImageSet, ImageSet]:
    """The validation images in two disjoint halves (fixed draw): the probe is fitted on one, scored on the other."""
    images = ws.data.holdout("val")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(PROBE_SEED))
    half = len(images) // 2
    return images.subset(order[:half]), images.subset(order[half:])


def probe_accuracies(model: Classifier, fit: ImageSet, scored: ImageSet, forgotten: list[int]) -> dict[str, float]:
    """Accuracy (%) of a linear probe on ``model``'s features on the forgotten classes and on the kept ones, and the
    model's own accuracy on the forgotten classes' images of ``scored``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(predict_features(model, fit.images).numpy(), fit.labels.numpy())
    predicted = probe.predict(predict_features(model, scored.images).numpy())
    labels = scored.labels.numpy()
    is_forgotten = np.isin(labels, forgotten)
    own = predict_logits(model, scored.images[torch.from_numpy(is_forgotten)]).argmax(1).numpy()
    return {"probe_forgotten": 100.0 * float((predicted[is_forgotten] == labels[is_forgotten]).mean()),
            "probe_kept": 100.0 * float((predicted[~is_forgotten] == labels[~is_forgotten]).mean()),
            "model_forgotten": 100.0 * float((own == labels[is_forgotten]).mean())}


def probe_rows(ws: Workspace, forget: str, methods: list[str], seed: int) -> dict[str, dict[str, float]]:
    """Row label → probe accuracies, for the original, the masked original and each method's run on ``forget``."""
    spec = ForgetSpec.parse(forget, seed)
    if spec.kind != "class":
        raise SystemExit(f"{forget}: the feature probe asks about a forgotten class")
    fit, scored = probe_halves(ws)
    forgotten = list(spec.classes)
    models = {ORIGINAL_LABEL: ws.original, MASKED_LABEL: masked_original(ws, spec.classes)}
    rows = {label: probe_accuracies(model, fit, scored, forgotten) for label, model in models.items()}
    for method in methods:
        result = run(ws, RunRequest.parse(method, forget, {}, seed))
        rows[result.label] = probe_accuracies(result.model, fit, scored, forgotten)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--forget", default="class:0")
    parser.add_argument("--methods", default="retrain,wsscl,salun,cl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default=None, help="the original (default: the shipped one)")
    args = parser.parse_args(argv)
    ws = open_workspace(args.checkpoint, device="cpu")
    for forget in args.forget.split(","):
        rows = probe_rows(ws, forget, args.methods.split(","), args.seed)
        print(f"{forget}, seed {args.seed}: accuracy in % on the scored half of the validation images")
        print("| model | its own accuracy, forgotten class | probe, forgotten class | probe, kept classes |")
        print("|---|---|---|---|")
        for label, row in rows.items():
            print(f"| {label} | {row['model_forgotten']:.1f} | {row['probe_forgotten']:.1f} | {row['probe_kept']:.1f} |")
        print(flush=True)


if __name__ == "__main__":
    main()
