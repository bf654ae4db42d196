"""Probe: the unlearning rounds without augmentation, as the memorising recipe trains the original.

    PYTHONPATH=. python benchmarks/plain_rounds_probe.py bench|tune|unlearn [its arguments]
    e.g. bench --methods retrain,ft,wsscl --forget random:0.1 --seeds 1 --out-dir bench-results/plain

Every unlearning round (``engine.Round``) augments its batches (random crop and flip) by default, while
the default original was trained on plain images (``memorise`` recipe) and Retrain repeats that recipe.
Fine-tuning on augmented retain images cannot re-memorise the plain ones, which may be why every
retain-trained method ends several RA points under Retrain. This runs ``bench`` with rounds that do not
augment unless a method asks (the contrastive loss's second view is still augmented), to measure that
effect; the shipped defaults were tuned with augmented rounds, and ``tune`` here (with its own
``--storage``) searches values for plain rounds. ``tune --workers K`` starts unpatched helper
processes, so start this script K times with ``--workers 1`` on one ``--storage`` instead.
"""

from __future__ import annotations

import dataclasses
import sys

from wsscl_core import engine, methods
from wsscl_core.__main__ import main


@dataclasses.dataclass
class PlainRound(engine.Round):
    augment: bool = False


def use_plain_rounds() -> None:
    """Every module that builds rounds gets the un-augmented default."""
    import importlib
    import pkgutil

    engine.Round = PlainRound
    for info in pkgutil.iter_modules(methods.__path__):
        module = importlib.import_module(f"{methods.__name__}.{info.name}")
        if getattr(module, "Round", None) is not None:
            module.Round = PlainRound


if __name__ == "__main__":
    use_plain_rounds()
    sys.exit(main(sys.argv[1:]))
