"""How far each method separates forget from retain accuracy on random forgetting, and the Avg.Gap that allows.

    PYTHONPATH=. python benchmarks/selectivity.py RUN.json [RUN.json ...]

On a random forget set, Retrain classifies D_f about as well as unseen images while D_r stays memorised. Its
selectivity, s* = RA − (100 − UA) (retain accuracy minus forget accuracy), is what unlearning has to reproduce:
forgetting that lowers both accuracies together (s near 0) moves UA toward Retrain only by moving RA away.
Since s − s* = ΔRA + ΔUA, every model has |ΔUA| + |ΔRA| ≥ |s − s*|, so its Avg.Gap (the mean of four absolute
gaps) is at least |s − s*| / 4 however well TA and MIA match, and Avg.Gap ≤ G needs s ≥ s* − 4G.

Prints, per bench file: each method's selectivity, that floor and its Avg.Gap (mean ± std over the seeds,
the floor per seed against that seed's Retrain). Class forgetting has no such floor worth printing (D_f is a
class the model stops predicting), so class files are refused.
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks.class_summary import check_complete
from wsscl_core.bench import REFERENCE, BenchResult, BenchRow, label_of, read_outputs


def selectivity(row: BenchRow) -> float:
    """Retain accuracy minus forget accuracy, in points."""
    return row.scores["RA"] - (100.0 - row.scores["UA"])


def _cell(values: list[float]) -> str:
    mean = statistics.mean(values)
    return f"{mean:.2f}" + (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "")


def selectivity_table(result: BenchResult) -> str:
    """The markdown table of one benchmark: Method, s, floor |s − s*| / 4, Avg.Gap."""
    reference = {r.seed: selectivity(r) for r in result.of(REFERENCE)}
    lines = ["| Method | selectivity s = RA − forget accuracy | floor on Avg.Gap, abs(s − s*) / 4 | Avg.Gap |",
             "|---|---|---|---|"]
    for method in result.methods():
        rows = sorted(result.of(method), key=lambda r: r.seed)
        values = [selectivity(r) for r in rows]
        floors = [abs(v - reference[r.seed]) / 4 for v, r in zip(values, rows)]
        lines.append(f"| {label_of(method)} | {_cell(values)} | {_cell(floors)} | {_cell([r.avg_gap for r in rows])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="bench JSON files of random forgetting")
    args = parser.parse_args(argv)
    results = [read_outputs(path) for path in args.files]
    for path, result in zip(args.files, results):
        check_complete(path, result)
        if not result.forget.startswith("random:"):
            raise SystemExit(f"{path} forgets {result.forget}: selectivity is for random forget sets.")
    for result in results:
        seeds = sorted(r.seed for r in result.of(REFERENCE))
        print(f"\n{result.dataset}, {result.model}, forget {result.forget}, seeds {seeds}\n")
        print(selectivity_table(result))


if __name__ == "__main__":
    main()
