"""What selectivity costs on random forgetting: re-initialise part of the original, then refit it on D_r.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/reset_refit_probe.py --variants none@10,head@10,block3@10,salient:0.1@10

A probe, not a method (docs/notes/random-forgetting-selectivity.md, "What selectivity costs"). Every method
here lowers the forget accuracy only as fast as the retain accuracy (selectivity s = RA − forget accuracy
stays under 2, Retrain's is about 11). Retrain is selective because it never saw D_f and has memorised D_r;
this asks how much of Retrain's compute a model needs to get there from the original, when it first loses
part of its weights (and with them its memory of D_f *and* D_r) and then re-memorises D_r alone.

A variant is ``RESET@EPOCHS``: RESET is ``none`` (the original's weights, plain fine-tuning on D_r),
``all`` (every weight: with the recipe's epochs this is Retrain, seeded as it is),
``head`` (the output layer re-initialised), ``block3`` (the last conv block and the head), or ``salient:P``
(the fraction P of all weights with the largest forget-set gradient, SalUn's hard mask, set to a fresh
initialisation's values); EPOCHS of the original recipe on D_r follow (plain images, the recipe's batch,
warm-up and cosine decay, from the recipe's learning rate, or ``@LR`` after the epochs). Compute is given
relative to Retrain's: refit epochs / the recipe's epochs, both over D_r; ``--methods`` adds methods with
their tuned defaults and their planned compute relative to Retrain's. Points: the tuning objective's
(the subset and digits, split seeds 100 and 101, validation images), scored against the Retrain references
in the study store, with the untouched original beside them; with ``--reported``, a variant chosen there
is run on the reported points (the subset, split seeds 0-2, test images) against a Retrain run here.
``--forget class:K`` asks the same of a class (Avg.Gap then takes TA on the kept classes, as the tables do).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from pathlib import Path
from typing import Iterator

import optuna
import torch

from benchmarks.selectivity import selectivity
from wsscl_core.bench import mean_std_cell
from wsscl_core.data import ForgetSpec, ForgetSplit, Holdout, make_forget_split
from wsscl_core.metrics import avg_gap
from wsscl_core.methods.retrain import initial_model
from wsscl_core.models import Classifier
from wsscl_core.runs import RunRequest, execute, prepare, prepared_cost, score
from wsscl_core.saliency import forget_gradients, hard_mask
from wsscl_core.tune import TUNING_SEED, _reference_scores, open_settings, open_storage
from wsscl_core.workspace import Workspace, open_workspace

TUNING_SEEDS = (TUNING_SEED, TUNING_SEED + 1)
REPORTED_SEEDS = (0, 1, 2)


def reset(model: Classifier, how: str, ws: Workspace, split: ForgetSplit, seed: int) -> None:
    """Re-initialise the part of ``model`` that ``how`` names, in place, from the model Retrain starts from
    on this split and seed (see the module docstring)."""
    if how == "none":
        return
    fresh = initial_model(ws.context(split, seed)).state_dict()
    if how == "all":
        model.load_state_dict(fresh)
        return
    state = model.state_dict()
    if how.startswith("salient:"):
        mask = hard_mask(forget_gradients(model, ws.data, split.forget), float(how.split(":")[1]))
        for name, chosen in mask.items():
            state[name] = torch.where(chosen.bool(), fresh[name], state[name])
    else:
        prefixes = {"head": ("head.",), "block3": ("head.", "body.4.")}[how]
        named = [name for name in state if name.startswith(prefixes)]
        if not named:
            raise SystemExit(f"{how!r} names layers of the compact net; this is a {ws.model_name} model.")
        for name in named:
            state[name] = fresh[name]
    model.load_state_dict(state)


def reset_and_refit(ws: Workspace, split: ForgetSplit, seed: int, how: str, epochs: int,
                    lr: float | None = None) -> Classifier:
    """A copy of the original with the part ``how`` names re-initialised, then ``epochs`` of the original
    recipe on D_r (from ``lr`` if given)."""
    model = copy.deepcopy(ws.original)
    reset(model, how, ws, split, seed)
    recipe = dataclasses.replace(ws.recipe, epochs=epochs, **({"lr": lr} if lr else {}))
    ws.context(split, seed).train(model, [recipe.phase(split.retain, "Refit on D_r", "refit")])
    return model.eval()


def points(args: argparse.Namespace) -> Iterator[tuple[Workspace, str, int, Holdout, dict[str, float]]]:
    """(workspace, name, split seed, held-out images, Retrain's scores) of each point the probe runs."""
    if args.reported:
        ws = open_workspace(None, device="cpu")
        for seed in REPORTED_SEEDS:
            retrained = execute(ws, prepare(ws, RunRequest.parse("retrain", args.forget, None, seed, "test")))
            yield ws, ws.data.name, seed, "test", retrained.scores()
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(args.storage)
    for setting in open_settings(["fashion-mnist-subset", "digits"], None, Path("tuning"), "cpu"):
        for seed in TUNING_SEEDS:
            yield setting.ws, setting.name, seed, "val", _reference_scores(storage, setting, args.forget, seed, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--forget", default="random:0.1")
    parser.add_argument("--variants", default="none@10,head@10,block3@10,salient:0.1@10",
                        help="RESET@EPOCHS[@LR], comma-separated")
    parser.add_argument("--methods", default="", help="methods to run with their tuned defaults beside the variants")
    parser.add_argument("--storage", default="sqlite:///tuning/studies.db", help="holds the Retrain references")
    parser.add_argument("--reported", action="store_true",
                        help="the reported points instead (the subset, seeds 0-2, test images; Retrain run here)")
    args = parser.parse_args()
    variants = [item.split("@") for item in args.variants.split(",")]
    rows: dict[str, list[tuple[float, float]]] = {}

    def line(name: str, scores: dict[str, float], reference: dict[str, float], cost: float | None) -> None:
        gap, s = avg_gap(scores, reference), selectivity(scores)
        rows.setdefault(name, []).append((gap, s))
        cells = " ".join(f"{k} {scores[k]:6.2f}" for k in ("UA", "RA", "TA", "MIA"))
        if "TA_remaining" in scores:  # class forgetting: Avg.Gap takes TA on the kept classes
            cells += f" kept-class TA {scores['TA_remaining']:6.2f} (Retrain {reference['TA_remaining']:.2f})"
        compute = "unstated" if cost is None else f"{cost:5.1%}"  # a method without a planned cost
        print(f"  {name:20s} Avg.Gap {gap:6.3f}  s {s:6.2f}  {cells}  compute {compute}", flush=True)

    for ws, name, seed, holdout, reference in points(args):
        print(f"{name}, split seed {seed}, {holdout} images: Retrain " +
              " ".join(f"{k} {reference[k]:.2f}" for k in ("UA", "RA", "TA", "MIA")) +
              f"  s {selectivity(reference):.2f}", flush=True)
        split = make_forget_split(ws.data.train.labels, ForgetSpec.parse(args.forget, seed), ws.data.num_classes)
        line("original", score(ws, ws.original, split, seed, holdout).scores(), reference, 0.0)
        for method in filter(None, args.methods.split(",")):
            planned = prepare(ws, RunRequest.parse(method, args.forget, None, seed, holdout))
            line(method, execute(ws, planned).scores(), reference, prepared_cost(ws, planned))
        for how, epochs, *lr in variants:
            model = reset_and_refit(ws, split, seed, how, int(epochs), float(lr[0]) if lr else None)
            line(f"{how} + {epochs} ep" + (f" @{lr[0]}" if lr else ""),
                 score(ws, model, split, seed, holdout).scores(), reference, int(epochs) / ws.recipe.epochs)
    print("mean ± std over the points (Avg.Gap, s):")
    for name, values in rows.items():
        gaps, selectivities = zip(*values)
        print(f"  {name:20s} {mean_std_cell(list(gaps), digits=3)}  {mean_std_cell(list(selectivities))}")


if __name__ == "__main__":
    main()
