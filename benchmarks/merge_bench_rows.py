"""Replace some methods' rows of a benchmark with those of a later run on the same splits, and print the table.

    PYTHONPATH=. python benchmarks/merge_bench_rows.py BASE.json RERUN.json [--out-dir DIR]

When one method's defaults change, only that method needs running again. ``RERUN.json`` comes from
``bench --methods retrain,M1,M2 ...`` with the same checkpoint, forget set and seeds as ``BASE.json``.
The merge is refused unless Retrain's scores in both runs are identical seed by seed (same splits,
same Retrain model), so every gap in the merged table is to the same reference. RTE / Retrain of the
re-run rows is taken against the base run's Retrain time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wsscl_core.bench import REFERENCE, BenchResult, per_class_markdown, read_outputs, table_markdown, write_outputs


def merge(base: BenchResult, rerun: BenchResult) -> BenchResult:
    """``base`` with every non-Retrain method of ``rerun`` replaced (or added) by ``rerun``'s rows."""
    if (base.forget, base.dataset, base.model) != (rerun.forget, rerun.dataset, rerun.model):
        raise SystemExit("The two runs are not of the same dataset, model and forget set.")
    reference = {r.seed: r.scores for r in base.of(REFERENCE)}
    if {r.seed: r.scores for r in rerun.of(REFERENCE)} != reference:
        raise SystemExit("Retrain's scores differ between the runs (other splits or another Retrain); "
                         "run the whole benchmark again instead.")
    replaced = set(rerun.methods()) - {REFERENCE}
    rows = [r for r in base.rows if r.method not in replaced]
    order = base.methods() + [m for m in rerun.methods() if m not in base.methods()]
    rows += [r for r in rerun.rows if r.method in replaced]
    rows.sort(key=lambda r: order.index(r.method))
    return BenchResult(base.forget, base.dataset, base.model, rows, base.classes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", type=Path)
    p.add_argument("rerun", type=Path)
    p.add_argument("--out-dir", type=Path, default=None, help="also write the merged CSV/JSON here (to merge again)")
    args = p.parse_args(argv)
    result = merge(read_outputs(args.base), read_outputs(args.rerun))
    if args.out_dir is not None:
        write_outputs(result, args.out_dir)
    print(table_markdown(result))
    if result.forget.startswith("class"):
        print()
        print(per_class_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
