"""How far each method separates forget from retain accuracy on random forgetting, and the Avg.Gap that allows.

    PYTHONPATH=. python benchmarks/selectivity.py RUN.json [RUN.json ...]
    PYTHONPATH=. python benchmarks/selectivity.py --storage sqlite:///tuning/studies.db --setting fashion-mnist-subset

On a random forget set, Retrain classifies D_f about as well as unseen images while D_r stays memorised. Its
selectivity, s* = RA − (100 − UA) (retain accuracy minus forget accuracy), is what unlearning has to reproduce:
forgetting that lowers both accuracies together (s near 0) moves UA toward Retrain only by moving RA away.
Since s − s* = ΔRA + ΔUA, every model has |ΔUA| + |ΔRA| ≥ |s − s*|, so its Avg.Gap (the mean of four absolute
gaps) is at least |s − s*| / 4 however well TA and MIA match, and Avg.Gap ≤ G needs s ≥ s* − 4G.

Prints, per bench file: each method's selectivity, that floor and its Avg.Gap (mean ± std over the seeds,
the floor per seed against that seed's Retrain). Class forgetting has no such floor worth printing (D_f is a
class the model stops predicting), so class files are refused. With ``--storage``: every run a tuning study
scored at a random-forgetting point of ``--setting`` (validation images; trials that keep each point's UA and
RA), per point: how many runs, the most selective, the lowest floor and Avg.Gap, and how many runs the floor
leaves room to reach ``--target``.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import NamedTuple

from benchmarks.class_summary import check_complete
from wsscl_core.bench import REFERENCE, BenchResult, label_of, mean_std_cell, read_outputs


def selectivity(scores: dict[str, float]) -> float:
    """Retain accuracy minus forget accuracy, in points, from a run's scores."""
    return scores["RA"] - (100.0 - scores["UA"])


def selectivity_table(result: BenchResult) -> str:
    """The markdown table of one benchmark: Method, s, floor |s − s*| / 4, Avg.Gap."""
    reference = {r.seed: selectivity(r.scores) for r in result.of(REFERENCE)}
    lines = ["| Method | selectivity s = RA − forget accuracy | floor on Avg.Gap, abs(s − s*) / 4 | Avg.Gap |",
             "|---|---|---|---|"]
    for method in result.methods():
        rows = sorted(result.of(method), key=lambda r: r.seed)
        values = [selectivity(r.scores) for r in rows]
        floors = [abs(v - reference[r.seed]) / 4 for v, r in zip(values, rows)]
        cells = [mean_std_cell(column) for column in (values, floors, [r.avg_gap for r in rows])]
        lines.append(f"| {label_of(method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


class StoredRun(NamedTuple):
    """One run a tuning study scored at one point: its selectivity, the floor that puts on Avg.Gap, its Avg.Gap."""

    method: str
    selectivity: float
    floor: float
    avg_gap: float


def stored_runs(storage: str, setting: str) -> dict[str, list[StoredRun]]:
    """Point ("random:0.1 seed 100") → every run the store's studies scored there, against that point's Retrain."""
    import optuna

    from wsscl_core.tune import REFERENCES

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Retrain's scores per (setting, forget set, split seed); keyed "setting:data fingerprint:forget:seed:val"
    references: dict[tuple[str, str, str], list[dict[str, float]]] = defaultdict(list)
    for key, scores in optuna.load_study(study_name=REFERENCES, storage=storage).user_attrs.items():
        name, _, kind, fraction, seed, _ = key.split(":")
        references[(name, f"{kind}:{fraction}", seed)].append(scores)
    points: dict[str, list[StoredRun]] = defaultdict(list)
    for summary in optuna.get_all_study_summaries(storage):
        method, forget = (summary.study_name.split("|") + [""])[:2]
        if not forget.startswith("random:"):
            continue
        for trial in optuna.load_study(study_name=summary.study_name, storage=storage).trials:
            for key, scores in trial.user_attrs.get("scores", {}).items():
                parts = key.split(":")
                point_forget, (name, seed) = (":".join(parts[:2]), parts[2:]) if "+" in forget else (forget, parts)
                if name != setting:
                    continue
                reference = references.get((name, point_forget, seed), [])
                if len(reference) != 1:
                    raise SystemExit(f"{len(reference)} Retrain references for {name} {point_forget} seed {seed}.")
                s, s_ref = selectivity(scores), selectivity(reference[0])
                points[f"{point_forget} seed {seed}"].append(
                    StoredRun(method, s, abs(s - s_ref) / 4, trial.user_attrs["gaps"][key]))
    return dict(points)


def stored_runs_table(points: dict[str, list[StoredRun]], target: float) -> str:
    """One row per point: its runs, the most selective, the lowest floor and Avg.Gap, the runs the floor leaves
    room to reach ``target``."""
    lines = ["| point | runs (methods) | highest s | lowest floor | lowest Avg.Gap | runs with floor ≤ target |",
             "|---|---|---|---|---|---|"]
    for point, runs in sorted(points.items()):
        methods = len({r.method for r in runs})
        lines.append(f"| {point} | {len(runs)} ({methods}) | {max(r.selectivity for r in runs):.2f} | "
                     f"{min(r.floor for r in runs):.2f} | {min(r.avg_gap for r in runs):.2f} | "
                     f"{sum(r.floor <= target for r in runs)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", help="bench JSON files of random forgetting")
    parser.add_argument("--storage", help="a study store (SQLAlchemy URL) to read instead of bench files")
    parser.add_argument("--setting", default="fashion-mnist-subset", help="with --storage: the tuning setting")
    parser.add_argument("--target", type=float, default=1.5, help="with --storage: the Avg.Gap to leave room for")
    args = parser.parse_args(argv)
    if args.storage:
        points = stored_runs(args.storage, args.setting)
        if not points:
            raise SystemExit(f"No trial in {args.storage} kept its scores at a random-forgetting point of "
                             f"{args.setting}.")
        print(stored_runs_table(points, args.target))
        return
    if not args.files:
        parser.error("give bench JSON files or --storage")
    results = [read_outputs(path) for path in args.files]
    for path, result in zip(args.files, results):
        check_complete(path, result)
        if not result.forget.startswith("random:"):
            raise SystemExit(f"{path} forgets {result.forget}: selectivity is for random forget sets.")
    for result in results:
        seeds = sorted(r.seed for r in result.of(REFERENCE))
        held_out = ", validation images" if result.holdout == "val" else ""
        print(f"\n{result.dataset}, {result.model}, forget {result.forget}, seeds {seeds}{held_out}\n")
        print(selectivity_table(result))


if __name__ == "__main__":
    main()
