"""Would an objective that penalises doing worse than the untouched original choose other defaults?

    PYTHONPATH=. python benchmarks/penalised_selection.py [--forget random:0.1+random:0.5] [--penalties 0,1,10]

The tuning objective is the mean Avg.Gap over its points (forget set x setting x split seed). A method can
win on that mean while doing worse than the untouched original at one point (RL at random 50 % does on the
reported seeds). This scores each study's trials (the first ``budget`` finished, as the defaults are
chosen) again under ``mean + penalty * mean(max(0, gap - original's gap))`` at each point, with the
original's per-point gaps computed on the same splits and validation images. It prints the trial each
penalty would choose, at how many points that trial is not below the original (a tie counts, as in the
tables), and how many trials are below the original at every point. The same trials under another
selection rule: no new runs besides the original's evaluation, so every method keeps its equal budget.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wsscl_core import tune


def penalised(gaps: dict[str, float], untouched: dict[str, float], penalty: float) -> float:
    excess = [max(0.0, gaps[key] - untouched[key]) for key in gaps]
    return sum(gaps.values()) / len(gaps) + penalty * sum(excess) / len(excess)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--forget", default="random:0.1+random:0.5")
    parser.add_argument("--datasets", default="fashion-mnist-subset,digits")
    parser.add_argument("--seeds", default="100,101")
    parser.add_argument("--storage", default="sqlite:///tuning/studies.db")
    parser.add_argument("--penalties", default="0,1,10")
    args = parser.parse_args()

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = tune.open_storage(args.storage)
    settings = tune.open_settings(args.datasets.split(","), None, Path("tuning"))
    seeds = [int(s) for s in args.seeds.split(",")]
    untouched = tune.original_gaps(storage, settings, args.forget, seeds)
    penalties = [float(p) for p in args.penalties.split(",")]
    print("untouched original per point: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(untouched.items())))
    print(f"mean {sum(untouched.values()) / len(untouched):.3f}\n")
    print("| method | " + " | ".join(f"penalty {p:g}: trial (mean Avg.Gap, points worse than original)"
                                     for p in penalties) + " | a trial below the original at every point |")
    print("|---|" + "---|" * (len(penalties) + 1))
    for method in tune.tunable_methods("all"):
        study = optuna.load_study(study_name=tune.study_name(method, args.forget, settings), storage=storage)
        trials = [t for t in tune.first_finished(study, tune.study_budget(study, 16)) if t.user_attrs.get("gaps")]
        cells = []
        for penalty in penalties:
            chosen = min(trials, key=lambda t: penalised(t.user_attrs["gaps"], untouched, penalty))
            worse = len(tune.not_below(chosen.user_attrs["gaps"], untouched))
            cells.append(f"#{chosen.number} ({chosen.value:.2f}, {worse} of {len(untouched)})")
        everywhere = sum(not tune.not_below(t.user_attrs["gaps"], untouched) for t in trials)
        print(f"| {method} | " + " | ".join(cells) + f" | {everywhere} of {len(trials)} trials |")


if __name__ == "__main__":
    main()
