"""The ``--set`` arguments that run every method at its default learning rates as written in the defaults
file, unscaled, on an original trained at another learning rate (``bench`` scales them by the checkpoint's
recipe lr / the defaults' ``recipe_lr``; overrides are taken as given). For checking that scaling rule:

    PYTHONPATH=. python -m wsscl_core bench --checkpoint ORIG.pt --methods all --forget random:0.1 --seeds 3 \
        $(PYTHONPATH=. python benchmarks/unscaled_lr_sets.py random)
"""

from __future__ import annotations

import argparse
import dataclasses

from wsscl_core.methods import SCENARIOS, is_learning_rate, make_config, method_names


def unscaled_sets(scenario: str) -> list[str]:
    """``--set METHOD.FIELD=VALUE`` for every learning-rate field of every method, at its unscaled default."""
    sets = []
    for name in method_names():
        config = make_config(name, None, scenario, recipe_lr=None)
        sets += [f"--set {name}.{f.name}={getattr(config, f.name)!r}"
                 for f in dataclasses.fields(config) if is_learning_rate(f.name)]
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=SCENARIOS)
    print(" ".join(unscaled_sets(parser.parse_args().scenario)))


if __name__ == "__main__":
    main()
