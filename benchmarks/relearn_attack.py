"""Does a forgetting run leave the forgotten data quick to teach back? A relearning attack asks.

    PYTHONPATH=. python benchmarks/relearn_attack.py --forget class:0 --methods retrain,wsscl,salun,cl --seed 0
    PYTHONPATH=. python benchmarks/relearn_attack.py --forget random:0.1 --methods retrain,wsscl,salun,cl --seed 0

An attacker holds a few train images of the forgotten class (``--shots``, drawn from D_f) and as many of each
kept class (drawn from D_r), and fine-tunes the model on them for a few epochs (``--epochs``, each budget from
the same unlearned model): batch 32, the original recipe's momentum and weight decay, a constant learning rate of
``RELEARN_LR_FRACTION`` of the recipe's, no augmentation. That fraction is the largest of 0.2, 0.1, 0.04 and 0.02
at which the attack leaves the untouched original's kept-class validation accuracy within 1 point after 1 to 10
epochs (classes 0 and 7 of the shipped original, seed 0; ``--methods "" --lr-fraction F`` scores the original
rows alone): an attack that wrecks the model tells nothing of what it remembers. After each budget the forgotten
class's validation images, the rest of D_f and the kept classes' validation images are scored. Retrain never
learnt the class, so how much of it Retrain gets from these images is the target; a model that only hides the
class (the masked original, ``benchmarks/output_masking.py``) or keeps it in its features
(``benchmarks/feature_probe.py``) gets it back sooner. On a random forget set the attacker
holds ``--shots`` images of D_f and as many of each class from D_r, and every validation image is scored with
the rest of D_f: Retrain knows the rest of D_f about as well as unseen images, the original has memorised it,
and a run that still holds it scores the rest of D_f above the validation images after the attack. Runs are the
methods' defaults on ``--checkpoint`` (default: the shipped original); only validation images are scored.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses

import torch

from benchmarks.output_masking import MASKED_LABEL, masked_original
from wsscl_core.data import ForgetSpec, ForgetSplit, make_forget_split
from wsscl_core.engine import run_phases
from wsscl_core.metrics import predict_logits
from wsscl_core.models import Classifier
from wsscl_core.runs import ORIGINAL_LABEL, RunRequest, run
from wsscl_core.workspace import Workspace, open_workspace

RELEARN_BATCH = 32  # a few hundred images: the recipe's 128 would give two or three steps an epoch
RELEARN_LR_FRACTION = 0.04  # of the original recipe's learning rate (module docstring)


def relearn_indices(ws: Workspace, split: ForgetSplit, shots: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(the relearning set, the forget images outside it): ``shots`` train images of D_f and ``shots`` of each kept
    class from D_r, a fixed draw per ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    labels = ws.data.train.labels
    forget = split.forget[torch.randperm(len(split.forget), generator=generator)]
    if len(forget) <= shots:
        raise SystemExit(f"the forget set has {len(forget)} images; the attack needs more than --shots {shots}")
    chosen = [forget[:shots]]
    for cls in sorted(set(labels[split.retain].tolist())):
        pool = split.retain[labels[split.retain] == cls]
        chosen.append(pool[torch.randperm(len(pool), generator=generator)[:shots]])
    return torch.cat(chosen), forget[shots:]


def relearned(ws: Workspace, model: Classifier, indices: torch.Tensor, epochs: int, seed: int,
              lr_fraction: float = RELEARN_LR_FRACTION) -> Classifier:
    """A copy of ``model`` fine-tuned on the train images ``indices`` for ``epochs`` epochs."""
    attack = dataclasses.replace(ws.recipe, epochs=epochs, lr=lr_fraction * ws.recipe.lr, batch_size=RELEARN_BATCH,
                                 schedule="constant", warmup_fraction=0.0, augment=False)
    attacked = copy.deepcopy(model)
    run_phases(attacked, ws.data, [attack.phase(indices, "Relearning attack", "relearn")], seed=seed)
    return attacked.eval()


def accuracies(ws: Workspace, model: Classifier, forgotten: list[int], rest_of_forget: torch.Tensor) -> dict[str, float]:
    """Accuracy (%) on validation images and on the rest of D_f: the forgotten classes' validation images, the
    rest of D_f and the kept classes' validation images; for a random forget set (no forgotten class) every
    validation image, then the rest of D_f."""
    val = ws.data.holdout("val")
    hits = predict_logits(model, val.images).argmax(1) == val.labels
    train = ws.data.train.subset(rest_of_forget)
    rest = 100.0 * (predict_logits(model, train.images).argmax(1) == train.labels).float().mean().item()
    if not forgotten:
        return {"val": 100.0 * hits.float().mean().item(), "rest_of_forget": rest}
    is_forgotten = torch.isin(val.labels, torch.tensor(forgotten))
    return {"val_forgotten": 100.0 * hits[is_forgotten].float().mean().item(), "rest_of_forget": rest,
            "val_kept": 100.0 * hits[~is_forgotten].float().mean().item()}


def attack_rows(ws: Workspace, forget: str, methods: list[str], seed: int, shots: int, budgets: list[int],
                lr_fraction: float = RELEARN_LR_FRACTION) -> dict[str, dict[int, dict[str, float]]]:
    """Row label → epochs of relearning (0: none) → accuracies, for the original, the masked original (class
    forgetting) and each method's run on ``forget``."""
    spec = ForgetSpec.parse(forget, seed)
    split = make_forget_split(ws.data.train.labels, spec, ws.data.num_classes)
    indices, rest = relearn_indices(ws, split, shots, seed)
    forgotten = list(spec.classes) if spec.kind == "class" else []
    models = {ORIGINAL_LABEL: ws.original}
    if forgotten:
        models[MASKED_LABEL] = masked_original(ws, spec.classes)
    for method in methods:
        result = run(ws, RunRequest.parse(method, forget, {}, seed, "val"))
        models[result.label] = result.model
    return {label: {epochs: accuracies(ws, relearned(ws, model, indices, epochs, seed, lr_fraction) if epochs
                                       else model, forgotten, rest)
                    for epochs in [0, *budgets]}
            for label, model in models.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--forget", default="class:0")
    parser.add_argument("--methods", default="retrain,wsscl,salun,cl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shots", type=int, default=50,
                        help="forget images the attacker holds (and as many of each class of D_r)")
    parser.add_argument("--epochs", default="1,2,5,10", help="relearning budgets, epochs over the relearning set")
    parser.add_argument("--lr-fraction", type=float, default=RELEARN_LR_FRACTION,
                        help="the attack's learning rate as a fraction of the recipe's")
    parser.add_argument("--checkpoint", default=None, help="the original (default: the shipped one)")
    args = parser.parse_args(argv)
    ws = open_workspace(args.checkpoint, device="cpu")
    budgets = [int(e) for e in args.epochs.split(",")]
    for forget in args.forget.split(","):
        methods = [method for method in args.methods.split(",") if method]  # "" for the original rows alone
        rows = attack_rows(ws, forget, methods, args.seed, args.shots, budgets, args.lr_fraction)
        scored = ("the forgotten class's validation images / the rest of D_f / the kept classes' validation images"
                  if ForgetSpec.parse(forget, args.seed).kind == "class" else "every validation image / the rest of D_f")
        print(f"{forget}, seed {args.seed}, {args.shots} images per class, learning rate {args.lr_fraction:g} of the "
              f"recipe's: accuracy in % on {scored}, after E epochs")
        print("| model | " + " | ".join(f"E = {e}" for e in [0, *budgets]) + " |")
        print("|---|" + "---|" * (len(budgets) + 1))
        for label, by_budget in rows.items():
            cells = [" / ".join(f"{value:.1f}" for value in a.values()) for a in by_budget.values()]
            print(f"| {label} | " + " | ".join(cells) + " |")
        print(flush=True)


if __name__ == "__main__":
    main()
