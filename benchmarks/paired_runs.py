"""Two sets of benchmarks of the same splits side by side: Avg.Gap per method and forget set, A against B.

    PYTHONPATH=. python benchmarks/paired_runs.py --labels scaled "as written" \
        --a scaled/*class-3.json scaled/*class-7.json --b written/*class-3.json written/*class-7.json

For comparing two ways of running every method (for example the learning-rate scaling against the file's
rates as written, `benchmarks/unscaled_lr_sets.py`) on the same original and splits. Rows pair by forget set,
split seed and method; each cell is the mean over the seeds both sets have. A method whose rows are the same
in both sets (Retrain, the Original, a method the change does not reach) is left out of the count of which
set is lower.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

from benchmarks.class_summary import check_complete
from wsscl_core.bench import REFERENCE, BenchResult, label_of, read_outputs


def gaps_by_setting(paths: list[str]) -> dict[str, dict[str, dict[int, float]]]:
    """forget set (and held-out images) → method → split seed → Avg.Gap, from complete bench JSON files of one
    dataset and model. A row two files share (Retrain and the Original of a seed both runs have) must score the
    same in both, as it does when both ran on one machine; otherwise the files are refused."""
    out: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    scores: dict[tuple[str, str, int], dict[str, float]] = {}
    originals = set()
    for path in paths:
        result: BenchResult = read_outputs(path)
        check_complete(path, result)
        originals.add((result.dataset, result.model))
        # scores on validation images are another setting than the same splits scored on the test set
        setting = result.forget + (" (validation images)" if result.holdout == "val" else "")
        for row in result.rows:
            if scores.setdefault((setting, row.method, row.seed), row.scores) != row.scores:
                raise SystemExit(f"{label_of(row.method)} has split seed {row.seed} of {setting} twice with "
                                 "other scores; give each seed once.")
            out[setting][row.method][row.seed] = row.avg_gap
    if len(originals) > 1:
        raise SystemExit(f"The files are of more than one dataset and model: {sorted(originals)}.")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", nargs="+", required=True, help="bench JSON files of the first set")
    parser.add_argument("--b", nargs="+", required=True, help="bench JSON files of the second set")
    parser.add_argument("--labels", nargs=2, default=("A", "B"), help="the two sets' names in the table")
    args = parser.parse_args(argv)

    a, b = gaps_by_setting(args.a), gaps_by_setting(args.b)
    settings = [s for s in a if s in b]
    if not settings:
        raise SystemExit("The two sets share no forget set.")
    methods = [m for m in dict.fromkeys(m for s in settings for m in a[s])  # those run in both, on every forget set
               if m != REFERENCE and all(m in a[s] and m in b[s] for s in settings)]
    seeds = {s: sorted(set(a[s][REFERENCE]) & set(b[s][REFERENCE])) for s in settings}
    la, lb = args.labels
    counts = {s: f"{len(seeds[s])} seed" + ("s" if len(seeds[s]) != 1 else "") for s in settings}
    head = ["Method", *(f"{s} ({counts[s]}): {lab}" for s in settings for lab in (la, lb)),
            f"all: {la}", f"all: {lb}"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    pooled = {}  # method -> its Avg.Gap in every paired run of set A, and of set B
    for method in methods:
        cells, runs_a, runs_b = [], [], []
        for s in settings:
            common = [k for k in seeds[s] if k in a[s][method] and k in b[s][method]]
            in_a, in_b = [a[s][method][k] for k in common], [b[s][method][k] for k in common]
            runs_a, runs_b = runs_a + in_a, runs_b + in_b
            cells += [f"{statistics.mean(in_a):.2f}", f"{statistics.mean(in_b):.2f}"]
        pooled[method] = (runs_a, runs_b)
        print(f"| {label_of(method)} | " + " | ".join(cells)
              + f" | {statistics.mean(runs_a):.2f} | {statistics.mean(runs_b):.2f} |")
    means = [(statistics.mean(ra), statistics.mean(rb)) for ra, rb in pooled.values() if ra != rb]
    if not means:
        print("\nEvery method's rows are the same in both sets.")
        return
    lower_a, lower_b = sum(ma < mb for ma, mb in means), sum(mb < ma for ma, mb in means)
    ties = len(means) - lower_a - lower_b
    col_a, col_b = [ma for ma, _ in means], [mb for _, mb in means]
    equal = f", equal means for {ties}" if ties else ""
    print(f"\nOver the {len(means)} method(s) whose rows differ: {la} lower for {lower_a}, {lb} for {lower_b}"
          f"{equal}; mean {statistics.mean(col_a):.2f} against {statistics.mean(col_b):.2f}, "
          f"median {statistics.median(col_a):.2f} against {statistics.median(col_b):.2f} (Avg.Gap in %).")


if __name__ == "__main__":
    main()
