"""A method's accuracies after every epoch of the run `bench` makes (docs/notes/random-forgetting-selectivity.md).

    PYTHONPATH=. python benchmarks/run_trajectory.py --method wsscl --forget random:0.1 --seed 4
    PYTHONPATH=. python benchmarks/run_trajectory.py --seed 102 --holdout val --variant schedule=cosine

Runs the method as `bench` runs it: the same split, seed, defaults and engine. After every epoch of
every phase, and when a stop rule ends a phase, it prints the accuracy on the forget set, on the retain
samples the tables score, and on the held-out images, with the class the held-out images are most often
given and its share; then the run's scores as the tables give them, with its Avg.Gap to Retrain and the
untouched original's. Reading the model between steps (in eval mode, without gradients) draws no
random numbers and changes no weight or batch-norm statistic, so the defaults' scores repeat `bench`'s
row for that method and seed. Each `--variant` runs the method once more with the values it names
changed, against the same Retrain."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Callable

import torch

from wsscl_core.data import Holdout
from wsscl_core.engine import ProgressEvent
from wsscl_core.errors import WssclError
from wsscl_core.methods import UnlearnContext, run_unlearning
from wsscl_core.metrics import Evaluation, accuracy, avg_gap, predict_logits, retain_eval_indices
from wsscl_core.models import Classifier
from wsscl_core.runs import ORIGINAL_LABEL, RETAIN_EVAL, RunRequest, original_result, prepare, run, score
from wsscl_core.workspace import Workspace, open_workspace


@dataclasses.dataclass
class TracingContext(UnlearnContext):
    """An UnlearnContext that keeps the model the method trains, so a progress callback can read it."""

    traced: list[Classifier] = dataclasses.field(default_factory=list)

    def copy_original(self) -> Classifier:
        model = super().copy_original()
        self.traced.append(model)
        return model


def trace_runs(ws: Workspace, method: str, forget: str, seed: int, holdout: Holdout,
               variants: list[dict[str, str]], emit: Callable[[str], None] = print) -> list[Evaluation]:
    """Retrain and the original, then the method with its defaults and with each variant, epoch by epoch.
    Returns Retrain's evaluation and each run's, in that order."""
    requests = [RunRequest.parse(method, forget, overrides, seed, holdout) for overrides in [{}, *variants]]
    prepared = [prepare(ws, request) for request in requests]  # every variant is checked before anything runs
    split, train, held = prepared[0].split, ws.data.train, ws.data.holdout(holdout)
    retain = retain_eval_indices(split, seed, RETAIN_EVAL)
    sets = {"forget": (train.images[split.forget], train.labels[split.forget]),
            "retain": (train.images[retain], train.labels[retain]),
            holdout: (held.images, held.labels)}

    def line(label: str, model: Classifier) -> str:
        with torch.no_grad():
            logits = {key: predict_logits(model, images) for key, (images, _) in sets.items()}
        cells = "  ".join(f"{key} {accuracy(logits[key], labels):6.2f}" for key, (_, labels) in sets.items())
        counts = torch.bincount(logits[holdout].argmax(1), minlength=ws.data.num_classes)
        top = int(counts.argmax())
        share = 100.0 * float(counts[top]) / len(held.labels)
        return f"{label:28s} {cells}  most given {ws.data.classes[top]} {share:5.1f} %"

    def summary(label: str, evaluation: Evaluation) -> str:
        cells = "  ".join(f"{key} {value:.2f}" for key, value in evaluation.scores().items())
        return f"{label}: {cells}  Avg.Gap {avg_gap(evaluation.scores(), target):.2f}"

    retrained = run(ws, RunRequest.parse("retrain", forget, None, seed, holdout))
    target = retrained.evaluation.scores()
    emit(line("Retrain", retrained.model))
    emit(line("original", ws.original))
    emit(summary(ORIGINAL_LABEL, original_result(ws, split, requests[0]).evaluation))
    evaluations = [retrained.evaluation]
    for run_prepared in prepared:
        emit(f"-- {run_prepared.label}, {run_prepared.request.overrides or 'its defaults'}")
        ctx = TracingContext(ws.original, ws.data, split, ws.model_name, ws.recipe, seed)

        def on_progress(event: ProgressEvent, ctx: TracingContext = ctx) -> None:
            if event.kind == "epoch_end" or event.kind == "phase_end" and "stopped_at_step" in event.metrics:
                emit(line(f"{event.phase} epoch {event.epoch}/{event.epochs}", ctx.traced[-1]))

        ctx.on_progress = on_progress
        outcome = run_unlearning(method, ctx, run_prepared.config)
        evaluations.append(score(ws, outcome.model, split, seed, holdout))
        emit(summary(run_prepared.label, evaluations[-1]))
    return evaluations


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="wsscl")
    p.add_argument("--forget", default="random:0.1")
    p.add_argument("--seed", type=int, default=4, help="the split seed (bench's --seed S --seeds N runs S..S+N-1)")
    p.add_argument("--holdout", choices=("test", "val"), default="test")
    p.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                   help="run the method once more with these values changed (after its defaults; repeatable)")
    p.add_argument("--checkpoint", default=None, help="an original other than the shipped one")
    args = p.parse_args(argv)
    items = [[item.split("=", 1) for item in variant.split(",")] for variant in args.variant]
    if any(len(pair) != 2 for variant in items for pair in variant):
        p.error("--variant expects KEY=VALUE pairs separated by commas, e.g. schedule=cosine,stage2_lr=0.01")
    variants = [dict(variant) for variant in items]
    try:
        trace_runs(open_workspace(args.checkpoint, device="cpu"), args.method, args.forget, args.seed, args.holdout,
                   variants, emit=lambda text: print(text, flush=True))
    except WssclError as exc:  # an unknown method or value: the library's message, not a traceback
        p.error(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
