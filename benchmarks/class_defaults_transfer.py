"""Do the class-forgetting defaults still forget on an original trained another way?

    PYTHONPATH=. python benchmarks/class_defaults_transfer.py [--against REV] [--classes 3,0] [--augment/--no-augment]

The class defaults were tuned on memorising originals (trained without augmentation). This trains a digits
original with the test suite's quick recipe (12 epochs, batch 64; with augmentation by default, so it
generalises rather than memorises), forgets each class with every method's class defaults, and prints the
forgotten class's unlearning accuracy (UA, 100 % is Retrain's) and the retain accuracy (RA). With
``--against REV`` it runs the class defaults of that commit's defaults file beside the current ones.
Digits' own train images only: a check of what the defaults do, not a reported result.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess

from wsscl_core.checkpoints import checkpoint_bytes
from wsscl_core.data import ForgetSpec, load_dataset, make_forget_split
from wsscl_core.engine import TrainRecipe
from wsscl_core.methods import run_unlearning
from wsscl_core.tune import BASE_ROUNDS, has_rounds, tunable_methods
from wsscl_core.metrics import accuracy, predict_logits
from wsscl_core.workspace import open_workspace, train_original

QUICK_RECIPE = TrainRecipe(epochs=12, lr=0.05, batch_size=64, augment=True)


def class_defaults_at(rev: str) -> dict[str, dict]:
    """The class defaults of ``rev``'s defaults file. A file from before ``augment_rounds`` and ``schedule``
    existed ran every round augmented at a constant learning rate, so that is stated for the methods that
    have rounds (else the current defaults would fill them in)."""
    text = subprocess.run(["git", "show", f"{rev}:wsscl_core/methods/defaults.json"], check=True,
                          capture_output=True, text=True).stdout
    return {method: {**(BASE_ROUNDS if has_rounds(method) else {}), **scenarios["class"]}
            for method, scenarios in json.loads(text)["methods"].items() if "class" in scenarios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", help="a commit whose class defaults run beside the current ones")
    parser.add_argument("--classes", default="3,0")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()

    data = load_dataset("digits")
    recipe = dataclasses.replace(QUICK_RECIPE, augment=args.augment)
    original = train_original(data, "compact", recipe, seed=0, device="cpu")
    ws = open_workspace(checkpoint_bytes(*original), data, device="cpu")
    print(f"digits original: {recipe.epochs} epochs, augment={recipe.augment}; "
          f"train {accuracy(predict_logits(original[0], data.train.images), data.train.labels):.2f} %, "
          f"test {accuracy(predict_logits(original[0], data.test.images), data.test.labels):.2f} %\n")
    variants = {"current": None} | ({args.against: class_defaults_at(args.against)} if args.against else {})
    splits = [make_forget_split(data.train.labels, ForgetSpec.parse(f"class:{c}", 0), data.num_classes)
              for c in args.classes.split(",")]

    def ua_ra(model, split) -> str:
        forget_acc = accuracy(predict_logits(model, data.train.images[split.forget]), data.train.labels[split.forget])
        retain_acc = accuracy(predict_logits(model, data.train.images[split.retain]), data.train.labels[split.retain])
        return f"{100 - forget_acc:.1f} / {retain_acc:.1f}"

    print("| method | " + " | ".join(f"class {split.spec.classes[0]}, {name}: UA / RA" for split in splits
                                     for name in variants) + " |")
    print("|---|" + "---|" * (len(splits) * len(variants)))
    print("| Original (no unlearning) | " + " | ".join(ua_ra(original[0], split) for split in splits
                                                         for _ in variants) + " |")
    for method in tunable_methods("all"):
        cells = [ua_ra(run_unlearning(method, ws.context(split, 0), None if values is None else values.get(method)).model,
                       split) for split in splits for values in variants.values()]
        print(f"| {method} | " + " | ".join(cells) + " |", flush=True)

if __name__ == "__main__":
    main()
