"""Do round-option choices hold on fresh tuning splits?

The defaults file keeps a round-option variant (plain rounds, a cosine schedule) only if it beats the base
by a clear margin on the tuning objective (``tune.chosen_values``). This script checks that rule away from
the points it decided on, without touching anything a table reports: for each method it takes the
candidates the decision was between (the base rounds, the lowest-scoring study, and the margin rule's
choice), each at the point its study scored, and scores them on other split seeds and, for classes, other
classes than both the tuning objective and the reported tables use, on validation images, exactly as a
tuning trial is scored. It prints every candidate's mean Avg.Gap and the paired gains between them.

    PYTHONPATH=. python benchmarks/variant_replication.py --objective random:0.1+random:0.5 \
        --forget random:0.1+random:0.5 --methods rl,salun,wsscl --seed 102
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import optuna

from wsscl_core import tune
from wsscl_core.methods import get_method

REPORTED_SEEDS = range(0, 3)
REPORTED_CLASSES = {3, 7, 0}


def candidates(storage: Any, method: str, objective: str, settings: list[tune.TuneSetting]) -> dict[str, dict]:
    """The base rounds, the lowest-scoring study and the margin rule's choice: label -> round options, the
    study's best point with them, and its tuning score."""
    studies = {tune.rounds_label(options) or "base rounds": {
        "options": options, "values": tune.study_values(study, best), "tuning": best.value}
        for options, study, best in tune.round_option_studies(storage, method, objective, settings)}
    chosen, _ = tune.chosen_values(storage, method, objective, settings)
    lowest = min(studies, key=lambda label: studies[label]["tuning"])
    margin = next(label for label, c in studies.items() if c["values"] == chosen)
    keep = dict.fromkeys(["base rounds", lowest, margin])
    return {label: {**studies[label], "role": ", ".join(
        role for role, which in (("lowest", lowest), ("margin rule", margin)) if which == label) or "base"}
        for label in keep}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objective", required=True, help="the tuning objective whose studies decided")
    parser.add_argument("--forget", required=True, help="the fresh forget sets (never reported)")
    parser.add_argument("--methods", default="", help="comma list (none: only the untouched original)")
    parser.add_argument("--seed", type=int, default=102, help="first fresh split seed (tuning used 100, 101)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--storage", default=tune.DEFAULT_STORAGE, help="the study store (only read)")
    args = parser.parse_args()
    seeds = list(range(args.seed, args.seed + args.seeds))
    classes = {int(f.split(":")[1]) for f in tune.forget_sets(args.forget) if f.startswith("class:")}
    if set(seeds) & set(REPORTED_SEEDS) or classes & REPORTED_CLASSES:
        parser.error("the fresh points must avoid the reported seeds and classes")
    settings = tune.open_settings(["fashion-mnist-subset", "digits"], None, Path("tuning"), "cpu")
    store = tune.open_storage(args.storage)
    references = optuna.storages.InMemoryStorage()  # Retrain on the fresh splits, kept for this run only
    print(f"fresh points: forget {args.forget}, seeds {seeds}, validation images; decided on {args.objective}\n")
    untouched = tune.original_gaps(references, settings, args.forget, seeds)  # the row every candidate must beat
    print(f"{tune.ORIGINAL_LABEL}: fresh {sum(untouched.values()) / len(untouched):.3f}  "
          + " ".join(f"{k} {v:.2f}" for k, v in sorted(untouched.items())) + "\n", flush=True)
    for method in filter(None, args.methods.split(",")):
        label = get_method(method).label
        scored = {}
        for name, candidate in candidates(store, method, args.objective, settings).items():
            objective = tune.objective_for(method, args.forget, settings, seeds, references,
                                           options=candidate["options"])
            trial = optuna.trial.FixedTrial({k: v for k, v in candidate["values"].items()
                                             if k not in tune.BASE_ROUNDS})
            value = objective(trial)
            scored[name] = trial.user_attrs.get("gaps", {})
            print(f"{label} ({name}; {candidate['role']}): tuning {candidate['tuning']:.3f}, fresh {value:.3f}  "
                  + " ".join(f"{k} {v:.2f}" for k, v in sorted(scored[name].items())), flush=True)
        names = list(scored)
        for i, first in enumerate(names):
            for second in names[i + 1:]:
                gain = tune.paired_gain(scored[first], scored[second])
                if gain is not None:
                    print(f"  {second} over {first}: {gain[0]:+.3f} ± {gain[1]:.3f}")
        print()


if __name__ == "__main__":
    main()
