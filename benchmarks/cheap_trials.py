"""Avg.Gap against compute among a two-stage method's tuning trials: the best trial under a cost cap.

    PYTHONPATH=. python benchmarks/cheap_trials.py STUDY [--storage URL] [--cap 0.05] [--fraction 0.1]

The tuning objective has no time term, so its best trial may be slow. This lists a CL / WS-CL / WSS-CL
study's trials (the first ``budget`` finished, as the defaults are chosen) with their estimated cost
relative to Retrain at forget fraction ``--fraction``, and picks the best trial within ``--cap``. Cost counts
samples processed: stage-1 passes over D_f, one gradient pass over D_f for the saliency mask (WS-CL,
WSS-CL), stage-2 passes over D_f each with ``retain_ratio`` retain batches per forget batch; Retrain is the
original recipe's epochs over D_r. Values are tuning scores (tuning seeds, validation images), so the trial
picked here can be run on the reported seeds without having seen them.
"""

from __future__ import annotations

import argparse

from wsscl_core import tune
from wsscl_core.engine import TrainRecipe


def relative_cost(params: dict, fraction: float, masked: bool, retrain_epochs: int = TrainRecipe.epochs) -> float:
    forget_passes = params["stage1_epochs"] + (1 if masked else 0) + params["stage2_epochs"] * (1 + params["retain_ratio"])
    return forget_passes * fraction / (retrain_epochs * (1 - fraction))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study")
    parser.add_argument("--storage", default="sqlite:///tuning/studies.db")
    parser.add_argument("--cap", type=float, default=0.05, help="largest cost relative to Retrain")
    parser.add_argument("--fraction", type=float, default=0.1, help="forget fraction the cost is estimated at")
    args = parser.parse_args()

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=args.study, storage=tune.open_storage(args.storage))
    method = study.user_attrs["method"]
    masked = method in ("wscl", "wsscl")  # CL has no saliency mask
    budget = tune.study_budget(study, 16)
    done = tune.first_finished(study, budget)
    rows = sorted(((relative_cost(t.params, args.fraction, masked), t) for t in done), key=lambda row: row[0])
    print(f"{args.study}: {len(done)} trials (budget {budget}); untouched original {study.user_attrs.get('original_gap'):.3f}")
    print("| trial | cost / Retrain | mean Avg.Gap | values |\n|---|---|---|---|")
    for cost, trial in rows:
        values = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in trial.params.items()}
        print(f"| {trial.number} | {cost:.3f} | {trial.value:.3f} | {values} |")
    capped = [(t.value, cost, t) for cost, t in rows if cost <= args.cap]
    best = tune.best_trial(study, budget)
    print(f"\nbest overall: trial {best.number}, {best.value:.3f} at cost "
          f"{relative_cost(best.params, args.fraction, masked):.3f}")
    if capped:
        value, cost, trial = min(capped, key=lambda row: row[0])
        print(f"best within cost {args.cap:g}: trial {trial.number}, {value:.3f} at cost {cost:.3f}: {trial.params}")
    else:
        print(f"no trial within cost {args.cap:g}")


if __name__ == "__main__":
    main()
