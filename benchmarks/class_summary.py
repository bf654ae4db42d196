"""One line per method over several class-forgetting benchmarks: UA per class, kept-class TA gap, Avg.Gap.

    PYTHONPATH=. python benchmarks/class_summary.py runs/mnist-5k/*_class-3.json runs/mnist-5k/*_class-7.json ...

Reads the JSON files that `bench` writes (one per forgotten class, same methods and seeds) and prints, for
each method, the forgotten class's UA (mean over seeds; Retrain's is 100 %), the kept-class TA minus
Retrain's, each class's Avg.Gap and their mean, so the class targets (UA = 100 %, kept-class TA within 1
point of Retrain) can be read for every class at once.
"""

from __future__ import annotations

import argparse

import numpy as np

from wsscl_core.bench import REFERENCE, BenchResult, label_of, read_outputs


def mean_of(result: BenchResult, method: str, key: str) -> float:
    """A score of ``method``, averaged over its seeds."""
    return float(np.mean([r.scores[key] for r in result.of(method)]))


def check_complete(path: str, result: BenchResult) -> None:
    """Refuse a file of a benchmark still running or cut off: every method needs Retrain's seeds."""
    short = result.short_of_retrain()
    reference = sorted(r.seed for r in result.of(REFERENCE))
    if short or not reference:
        raise SystemExit(f"{path} is incomplete: " + (", ".join(f"{m} has seeds {s}" for m, s in short.items())
                                                      or "it has no Retrain rows") + f", Retrain {reference}.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="bench JSON files, one per forgotten class")
    args = parser.parse_args(argv)

    tables = [read_outputs(path) for path in args.files]
    for path, table in zip(args.files, tables):
        check_complete(path, table)
    if len({t.holdout for t in tables}) > 1:
        raise SystemExit("Some files are scored on validation images and some on the test set; give one kind.")
    labels = [t.forget.split(":", 1)[1] for t in tables]
    methods = [m for m in dict.fromkeys(m for t in tables for m in t.methods()) if m != REFERENCE]
    head = ["Method", *(f"UA {c}" for c in labels), *(f"kept TA − Retrain, {c}" for c in labels),
            *(f"Avg.Gap {c}" for c in labels), "mean Avg.Gap"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for method in methods:
        ua = [mean_of(t, method, "UA") for t in tables]
        kept = [mean_of(t, method, "TA_remaining") - mean_of(t, REFERENCE, "TA_remaining") for t in tables]
        gaps = [t.mean_gap(method) for t in tables]
        print(f"| {label_of(method)} | " + " | ".join([*(f"{v:.2f}" for v in ua), *(f"{v:+.2f}" for v in kept),
                                                     *(f"{v:.2f}" for v in gaps), f"{np.mean(gaps):.2f}"]) + " |")
    seeds = sorted({r.seed for t in tables for r in t.rows})
    held_out = "; held-out images: validation images" if tables[0].holdout == "val" else ""
    print(f"\n{tables[0].dataset}, model {tables[0].model}, seeds {seeds}{held_out}; means over seeds, in %.")


if __name__ == "__main__":
    main()
