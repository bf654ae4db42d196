"""What the class-forgetting metrics give a model that only hides the forgotten class: the untouched original
with that class's output logit pushed down by ``MASK_LOGIT``, scored like a run against each seed's Retrain.

    PYTHONPATH=. python benchmarks/output_masking.py --checkpoint original.pt RUN.json [RUN.json ...]

A reference row, not a method: every weight, and so everything the features know about the class, is the
original's; only the output layer's bias changes. Each RUN.json is a class-forgetting ``bench`` file made on
``--checkpoint`` (default: the shipped original); its Original rows are scored again first, and a file whose
Original does not score as recorded is refused, since it was made on another model or split. Prints, per file,
the Original and the masked original with UA, RA, kept-class TA, MIA and the loss-attack AUC (mean over the
file's seeds) and their Avg.Gap, next to the file's lowest method.
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch

from wsscl_core.bench import REFERENCE, BenchResult, label_of, read_outputs
from wsscl_core.data import ForgetSpec, make_forget_split
from wsscl_core.metrics import avg_gap
from wsscl_core.models import Classifier
from wsscl_core.runs import ORIGINAL, score
from wsscl_core.workspace import Workspace, open_workspace

MASK_LOGIT = 1e4  # far below every other logit, yet finite: softmax and the per-sample loss stay defined
COLUMNS = ("UA", "RA", "TA_remaining", "MIA", "MIA_AUC")
MASKED_LABEL = "Original, forgotten output masked"


def masked_original(ws: Workspace, classes: tuple[int, ...]) -> Classifier:
    """A copy of the original whose output for ``classes`` is never the largest."""
    model = copy.deepcopy(ws.original)
    with torch.no_grad():
        model.output_layer().bias[list(classes)] -= MASK_LOGIT
    return model


def masking_rows(ws: Workspace, result: BenchResult) -> dict[str, list[dict[str, float]]]:
    """Per seed of ``result``: the original's and the masked original's scores with their Avg.Gap to that seed's
    Retrain; raises SystemExit when the original does not score as the file recorded it."""
    spec = ForgetSpec.parse(result.forget, 0)
    if spec.kind != "class":
        raise SystemExit(f"{result.forget}: output masking is a reference for class forgetting only")
    split = make_forget_split(ws.data.train.labels, spec, ws.data.num_classes)
    masked = masked_original(ws, spec.classes)
    recorded = {row.seed: row.scores for row in result.of(ORIGINAL)}
    rows: dict[str, list[dict[str, float]]] = {ORIGINAL: [], "masked": []}
    for reference in sorted(result.of(REFERENCE), key=lambda r: r.seed):
        original = score(ws, ws.original, split, reference.seed).scores()
        if any(abs(original[k] - recorded[reference.seed][k]) > 1e-4 for k in ("UA", "RA", "TA", "MIA")):
            raise SystemExit(f"{result.forget}, seed {reference.seed}: the original scores {original}, the file "
                             f"recorded {recorded[reference.seed]}; was it made on this checkpoint?")
        for name, scores in ((ORIGINAL, original), ("masked", score(ws, masked, split, reference.seed).scores())):
            rows[name].append({**scores, "Avg.Gap": avg_gap(scores, reference.scores)})
    return rows


def masking_table(ws: Workspace, result: BenchResult) -> str:
    """The markdown table of one file: the Original, the masked original, and the file's lowest method."""
    rows = masking_rows(ws, result)
    methods = [m for m in result.methods() if m not in (REFERENCE, ORIGINAL)]
    best = min(methods, key=result.mean_gap)
    lines = [f"{result.forget}, {len(rows[ORIGINAL])} seed(s): means over seeds",
             "| row | UA | RA | TA (kept classes) | MIA | Loss-attack AUC | Avg.Gap |", "|---|---|---|---|---|---|---|"]
    for name, label in ((ORIGINAL, label_of(ORIGINAL)), ("masked", MASKED_LABEL)):
        means = [float(np.mean([r[k] for r in rows[name]])) for k in (*COLUMNS, "Avg.Gap")]
        lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" if k == "MIA_AUC" else f"{v:.2f}"
                                                   for k, v in zip((*COLUMNS, "Avg.Gap"), means)) + " |")
    lines.append(f"| lowest method of the file: {label_of(best)} | | | | | | {result.mean_gap(best):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--checkpoint", default=None, help="the original the files were made on (default: shipped)")
    args = parser.parse_args(argv)
    ws = open_workspace(args.checkpoint, device="cpu")
    for path in args.files:
        print(masking_table(ws, read_outputs(path)), end="\n\n", flush=True)


if __name__ == "__main__":
    main()
