"""A method tuned with a learning rate per forget sample instead of per step (docs/notes/forget-size-units.md).

    PYTHONPATH=. python benchmarks/size_invariant_probe.py --method ga --storage sqlite:///bench-results/size-probe.db
    (a second process on the same store with --worker 1 shares the trials)

A probe, not an option (run for GA, BE and RL). Methods with forget rounds count their epochs in passes
over D_f, so at random 50 % they take five times the steps they take at random 10 %; for GA, BS and BE the
two-size objective chose learning rates (1e-5 to 2e-5) small enough not to break at 50 %, which leave the
model as it was at 10 %. This study scales the
searched learning rate by 0.1 / (the forget fraction) at each point, so that epochs × lr × |D_f|, the total
push, is the same at both sizes, and searches the method's space otherwise unchanged: the same two-size
objective, tuning settings, split seeds (100, 101), validation images and 16-trial budget as
``tune --forget random:0.1+random:0.5 --trials 16``. It runs in a store of its own, seeded with the Retrain
references of ``--references`` so that Retrain is not run again; its first trial is the method's default.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from wsscl_core import tune
from wsscl_core.methods import is_learning_rate

REFERENCE_FRACTION = 0.1
FORGET = "random:0.1+random:0.5"


def per_sample_learning_rates(method: str) -> None:
    """Make the tuning objective scale ``method``'s learning rates by REFERENCE_FRACTION / fraction."""
    unscaled = tune.run

    def run(ws, request, *args, **kwargs):
        if request.method == method and request.forget.kind == "random":
            factor = REFERENCE_FRACTION / request.forget.fraction
            overrides = {k: v * factor if is_learning_rate(k) else v for k, v in request.overrides.items()}
            request = dataclasses.replace(request, overrides=overrides)
        return unscaled(ws, request, *args, **kwargs)

    tune.run = run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", required=True)
    parser.add_argument("--storage", required=True, help="a store for this probe only")
    parser.add_argument("--references", default="sqlite:///tuning/studies.db")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--worker", type=int, default=0, help="this process's number when several share the store")
    args = parser.parse_args()
    import optuna

    storage = tune.open_storage(args.storage)
    known = optuna.load_study(study_name=tune.REFERENCES, storage=tune.open_storage(args.references)).user_attrs
    references = optuna.create_study(study_name=tune.REFERENCES, storage=storage, load_if_exists=True)
    for key, scores in known.items():
        if key not in references.user_attrs:
            references.set_user_attr(key, scores)
    per_sample_learning_rates(args.method)
    settings = tune.open_settings(["fashion-mnist-subset", "digits"], None, Path("tuning"), "cpu")
    seeds = [tune.TUNING_SEED, tune.TUNING_SEED + 1]

    def line(method, done, trials, value, best, seconds):
        print(f"[{method}] trial {done}/{trials}: {value:.3f} (best {best:.3f}), {seconds:.0f} s", flush=True)

    study = tune.tune_method(args.method, FORGET, settings, args.trials, storage, seeds, on_trial=line,
                             worker=args.worker)
    best = tune.best_trial(study, args.trials)
    untouched = study.user_attrs["original_gaps"]
    print(f"best of {args.trials}: {best.value:.3f} at {best.params} (untouched original {study.user_attrs['original_gap']:.3f})")
    for key, gap in sorted(best.user_attrs["gaps"].items()):
        scores = best.user_attrs["scores"][key]
        print(f"  {key}: Avg.Gap {gap:.3f} (original {untouched[key]:.3f}); "
              + " ".join(f"{k} {scores[k]:.2f}" for k in ("UA", "RA", "TA", "MIA")))


if __name__ == "__main__":
    main()
