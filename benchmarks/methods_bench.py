"""The benchmark table for chosen methods, reusing tune.py's cached Retrain runs.

    python benchmarks/methods_bench.py --methods wsscl,salun --forget random:0.1 --seeds 3

Same rows, metrics and table layout as ``python -m wsscl_core bench`` (it calls the same
evaluation and table code); only Retrain is read from the cache when it was run before,
which saves its minutes on a shared CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tune import retrain_scores

from wsscl_core.bench import REFERENCE, BenchResult, BenchRow, per_class_markdown, table_markdown
from wsscl_core.data import ForgetSpec, make_forget_split
from wsscl_core.methods import run_unlearning
from wsscl_core.metrics import METRIC_KEYS, avg_gap, evaluate
from wsscl_core.workspace import open_workspace


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", required=True, help="comma list (Retrain is always the reference)")
    p.add_argument("--forget", default="random:0.1")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--cache", default="runs/tune-cache")
    args = p.parse_args(argv)

    ws = open_workspace(args.checkpoint, device="cpu")
    rows: list[BenchRow] = []
    for seed in range(args.seed, args.seed + args.seeds):
        split = make_forget_split(ws.data.train.labels, ForgetSpec.parse(args.forget, seed), ws.data.num_classes)
        reference = retrain_scores(ws, args.forget, seed, Path(args.cache))
        ref_scores = {k: v for k, v in reference.items() if k not in ("rte_s", "per_class_test")}
        rows.append(BenchRow(REFERENCE, seed, ref_scores, reference["rte_s"], 0.0, reference.get("per_class_test", [])))
        for method in (m for m in args.methods.split(",") if m != REFERENCE):
            out = run_unlearning(method, ws.context(split, seed))
            ev = evaluate(out.model, ws.data, split, seed=seed, max_retain_eval=10_000)
            rows.append(BenchRow(method, seed, ev.scores(), out.seconds, avg_gap(ev.scores(), ref_scores),
                                 [float(v) for v in ev.per_class_test], dict(out.config.__dict__)))
            print(f"{method} seed {seed}: " + " ".join(f"{k} {ev.scores()[k]:.2f}" for k in METRIC_KEYS)
                  + f" gap {rows[-1].avg_gap:.2f} {out.seconds:.1f}s", file=sys.stderr, flush=True)
    result = BenchResult(args.forget, ws.data.name, ws.model_name, rows, list(ws.data.classes))
    print(table_markdown(result))
    if args.forget.startswith("class"):
        print()
        print(per_class_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
