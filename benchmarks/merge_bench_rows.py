"""Join benchmark runs of the same setting: a re-run's methods into a base table, or runs of other seeds.

    PYTHONPATH=. python benchmarks/merge_bench_rows.py BASE.json RERUN.json [--only M1,M2] [--out-dir DIR]
    PYTHONPATH=. python benchmarks/merge_bench_rows.py --join-seeds SEED0.json SEED1.json ... [--out-dir DIR]

When one method's defaults change, only that method needs running again. ``RERUN.json`` comes from
``bench --methods retrain,M1,M2 ...`` with the same checkpoint, forget set and seeds as ``BASE.json``.
The merge is refused unless Retrain's scores in both runs are identical seed by seed (same splits,
same Retrain model), so every gap in the merged table is to the same reference. RTE / Retrain of the
re-run rows is taken against the base run's Retrain time. ``--only`` takes only those methods of the re-run
(an earlier run that holds the rows of the defaults as they are now, beside others that changed since).

``--join-seeds`` puts side by side runs of other seeds (``bench --seed S --seeds 1`` in parallel processes,
one per core), each scored against its own seed's Retrain. It is refused unless every run has the same
methods and no seed appears twice, so each method's mean is over the same seeds; with ``--finished-only``
the methods that some run did not finish (a run cut off) are left out instead, and named.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wsscl_core.bench import REFERENCE, BenchResult, per_class_markdown, read_outputs, table_markdown, write_outputs


def _check_same_setting(results: list[BenchResult]) -> None:
    if len({(r.forget, r.dataset, r.model, r.holdout) for r in results}) > 1:
        raise SystemExit("The runs are not of the same dataset, model, forget set and held-out images.")


def merge(base: BenchResult, rerun: BenchResult, only: set[str] | None = None) -> BenchResult:
    """``base`` with every non-Retrain method of ``rerun`` (those of ``only``, if given) replaced (or added) by
    ``rerun``'s rows."""
    _check_same_setting([base, rerun])
    reference = {r.seed: r.scores for r in base.of(REFERENCE)}
    if {r.seed: r.scores for r in rerun.of(REFERENCE)} != reference:
        raise SystemExit("Retrain's scores differ between the runs (other splits or another Retrain); "
                         "run the whole benchmark again instead.")
    if only is not None and not only <= set(rerun.methods()):
        raise SystemExit(f"The re-run has no rows of {', '.join(sorted(only - set(rerun.methods())))}.")
    replaced = (set(rerun.methods()) if only is None else only) - {REFERENCE}
    rows = [r for r in base.rows if r.method not in replaced]
    order = base.methods() + [m for m in rerun.methods() if m not in base.methods()]
    rows += [r for r in rerun.rows if r.method in replaced]
    rows.sort(key=lambda r: order.index(r.method))
    return BenchResult(base.forget, base.dataset, base.model, rows, base.classes, base.holdout)


def join_seeds(parts: list[BenchResult], finished_only: bool = False) -> BenchResult:
    """One table of runs on other seeds: every part's rows, seed by seed as ``bench`` writes them.
    ``finished_only``: keep the methods that every part has, instead of refusing parts that differ."""
    _check_same_setting(parts)
    seeds = [r.seed for p in parts for r in p.of(REFERENCE)]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"A seed appears in more than one run ({sorted(seeds)}).")
    joined = BenchResult(parts[0].forget, parts[0].dataset, parts[0].model, [r for p in parts for r in p.rows],
                         parts[0].classes, parts[0].holdout)
    short = joined.short_of_retrain()
    if short and not finished_only:
        raise SystemExit("The runs have other methods (a run was cut off?): a mean would be over other seeds.")
    if short:
        print(f"left out, not finished on every seed: {', '.join(sorted(short))}", file=sys.stderr)
    order = [m for m in joined.methods() if m not in short]
    joined.rows = sorted((r for r in joined.rows if r.method in order), key=lambda r: (r.seed, order.index(r.method)))
    return joined


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="BASE.json RERUN.json, or with --join-seeds two or more runs")
    p.add_argument("--join-seeds", action="store_true", help="join runs of other seeds instead of replacing methods")
    p.add_argument("--finished-only", action="store_true",
                   help="with --join-seeds: leave out the methods some run did not finish instead of refusing")
    p.add_argument("--only", default=None, help="comma-separated methods: take only these from the re-run")
    p.add_argument("--out-dir", type=Path, default=None, help="also write the merged CSV/JSON here (to merge again)")
    args = p.parse_args(argv)
    if len(args.runs) < 2 or (len(args.runs) > 2 and not args.join_seeds):
        p.error("give BASE.json and RERUN.json, or two or more runs with --join-seeds")
    parts = [read_outputs(path) for path in args.runs]
    only = None if args.only is None else set(args.only.split(","))
    result = join_seeds(parts, args.finished_only) if args.join_seeds else merge(*parts, only=only)
    if args.out_dir is not None:
        write_outputs(result, args.out_dir)
    print(table_markdown(result))
    if result.forget.startswith("class"):
        print()
        print(per_class_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
