"""The benchmark: every method against Retrain on the same splits and seeds, in the paper's table layout."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .data import ForgetSpec, make_forget_split
from .engine import ProgressFn
from .metrics import METRIC_KEYS, Evaluation, avg_gap, evaluate
from .methods import get_method, make_config, method_names, run_unlearning
from .workspace import Workspace

REFERENCE = "retrain"


@dataclass
class BenchRow:
    """One method on one seed."""

    method: str
    seed: int
    scores: dict[str, float]
    rte_s: float
    avg_gap: float = 0.0
    per_class_test: list[float] = field(default_factory=list)
    config: dict = field(default_factory=dict)


@dataclass
class BenchResult:
    forget: str
    dataset: str
    model: str
    rows: list[BenchRow]
    classes: list[str]

    def methods(self) -> list[str]:
        return list(dict.fromkeys(r.method for r in self.rows))

    def of(self, method: str) -> list[BenchRow]:
        return [r for r in self.rows if r.method == method]


def resolve_methods(text: str) -> list[str]:
    """``all`` or a comma list; Retrain is always run first, as the reference."""
    names = method_names() if text.strip() == "all" else [m.strip() for m in text.split(",") if m.strip()]
    for n in names:
        get_method(n)
    return [REFERENCE] + [n for n in names if n != REFERENCE]


def run_benchmark(ws: Workspace, methods: list[str], forget: str, seeds: list[int],
                  overrides: dict[str, dict] | None = None,
                  progress_for: Callable[[str, int], ProgressFn | None] = lambda m, s: None,
                  cancel=None, max_retain_eval: int | None = 10_000) -> BenchResult:
    """Run each method on each seed's split and score it against that seed's Retrain."""
    rows: list[BenchRow] = []
    for seed in seeds:
        spec = ForgetSpec.parse(forget, seed=seed)
        split = make_forget_split(ws.data.train.labels, spec, ws.data.num_classes)
        reference: dict[str, float] | None = None
        for name in methods:
            cfg = make_config(name, (overrides or {}).get(name), split.scenario)
            out = run_unlearning(name, ws.context(split, seed, progress_for(name, seed), cancel), cfg)
            ev: Evaluation = evaluate(out.model, ws.data, split, seed=seed, max_retain_eval=max_retain_eval)
            scores = ev.scores()
            if name == REFERENCE:
                reference = scores
            gap = avg_gap(scores, reference) if reference else float("nan")
            rows.append(BenchRow(name, seed, scores, out.seconds, gap,
                                 [float(v) for v in ev.per_class_test], dict(cfg.__dict__)))
    return BenchResult(forget, ws.data.name, ws.model_name, rows, list(ws.data.classes))


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def _cell(values: list[float], reference: float | None = None, digits: int = 2) -> str:
    mean, std = _mean_std(values)
    text = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if len(values) > 1 else "")
    if reference is not None:
        text += f" ({abs(mean - reference):.{digits}f})"
    return text


def table_markdown(result: BenchResult) -> str:
    """Table 1 layout: UA, RA, TA, MIA (gap to Retrain in brackets), Avg.Gap, RTE and RTE/Retrain."""
    ref_rows = result.of(REFERENCE)
    ref = {k: _mean_std([r.scores[k] for r in ref_rows])[0] for k in METRIC_KEYS}
    ref_time = _mean_std([r.rte_s for r in ref_rows])[0]
    class_forgetting = result.forget.startswith("class")
    extra = ["TA (kept classes)"] if class_forgetting else []
    head = ["Method", "UA", "RA", "TA", "MIA", *extra, "Avg.Gap", "RTE (s)", "RTE / Retrain"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in result.methods():
        rows = result.of(method)
        is_ref = method == REFERENCE
        cells = [get_method(method).label]
        cells += [_cell([r.scores[k] for r in rows], None if is_ref else ref[k]) for k in METRIC_KEYS]
        if class_forgetting:
            ref_kept = _mean_std([r.scores["TA_remaining"] for r in ref_rows])[0]
            cells.append(_cell([r.scores["TA_remaining"] for r in rows], None if is_ref else ref_kept))
        cells.append(_cell([r.avg_gap for r in rows]))
        rte = _mean_std([r.rte_s for r in rows])[0]
        cells += [_cell([r.rte_s for r in rows], digits=1), f"{rte / ref_time:.3f}" if ref_time else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({r.seed for r in result.rows})
    lines.append("")
    lines.append(f"{result.dataset}, model {result.model}, forget {result.forget}, seeds {seeds}; "
                 "mean ± std over seeds, (gap to Retrain) in brackets; all values in %.")
    return "\n".join(lines)


def per_class_markdown(result: BenchResult) -> str:
    """Table 5 style: test accuracy per class for each method (forgotten classes marked *)."""
    spec = ForgetSpec.parse(result.forget)
    forgotten = set(spec.classes)
    names = [f"{c}{'*' if i in forgotten else ''}" for i, c in enumerate(result.classes)]
    lines = ["| Method | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for method in result.methods():
        rows = result.of(method)
        per_class = np.nanmean(np.array([r.per_class_test for r in rows], dtype=float), axis=0)
        lines.append(f"| {get_method(method).label} | " +
                     " | ".join("—" if math.isnan(v) else f"{v:.1f}" for v in per_class) + " |")
    lines.append("")
    lines.append("Test accuracy per class in % (mean over seeds); * = forgotten class.")
    return "\n".join(lines)


def write_outputs(result: BenchResult, out_dir: str | Path) -> list[Path]:
    """Per-seed rows as CSV and everything as JSON."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{result.dataset}_{result.model}_{result.forget.replace(':', '-').replace(',', '_')}"
    csv_path, json_path = out / f"{stem}.csv", out / f"{stem}.json"
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        extra = sorted({k for r in result.rows for k in r.scores} - set(METRIC_KEYS))
        w.writerow(["method", "seed", *METRIC_KEYS, *extra, "avg_gap", "rte_s"])
        for r in result.rows:
            w.writerow([r.method, r.seed, *(f"{r.scores[k]:.4f}" for k in METRIC_KEYS),
                        *(f"{r.scores.get(k, float('nan')):.4f}" for k in extra), f"{r.avg_gap:.4f}", f"{r.rte_s:.3f}"])
    json_path.write_text(json.dumps({"forget": result.forget, "dataset": result.dataset, "model": result.model,
                                     "classes": result.classes, "rows": [r.__dict__ for r in result.rows]}, indent=1))
    return [csv_path, json_path]
