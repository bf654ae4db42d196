"""The benchmark: every method against Retrain on the same splits and seeds, in the paper's table layout."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .data import ForgetSpec, Holdout
from .engine import CancelFlag, ProgressFn
from .errors import WssclError
from .fileio import atomic_write_files
from .metrics import METRIC_KEYS
from .methods import get_method, method_names
from .runs import ORIGINAL, ORIGINAL_LABEL, PreparedRun, RunRequest, RunResult, check, execute, original_result, prepare
from .workspace import Workspace

REFERENCE = "retrain"
FAILED_MARK = "✗"


@dataclass
class BenchRow:
    """One method (or the untouched original) on one seed."""

    method: str
    seed: int
    scores: dict[str, float]
    rte_s: float
    avg_gap: float = 0.0
    per_class_test: list[float] = field(default_factory=list)
    config: dict = field(default_factory=dict)

    @classmethod
    def of(cls, result: RunResult, reference: RunResult | None) -> "BenchRow":
        gap = result.gap_to(reference)
        return cls(result.method, result.request.seed, result.scores(), result.rte_s,
                   float("nan") if gap is None else gap, [float(v) for v in result.evaluation.per_class_test],
                   result.config)


@dataclass
class BenchResult:
    forget: str
    dataset: str
    model: str
    rows: list[BenchRow]
    classes: list[str]
    # the images TA, MIA and the loss attack are scored on: the reported test set, or validation images
    # ("val", for checks on tuning splits that no table reports)
    holdout: Holdout = "test"

    def methods(self) -> list[str]:
        return list(dict.fromkeys(r.method for r in self.rows))

    def of(self, method: str) -> list[BenchRow]:
        return [r for r in self.rows if r.method == method]

    def mean_gap(self, method: str) -> float:
        return float(np.mean([r.avg_gap for r in self.of(method)]))

    def short_of_retrain(self) -> dict[str, list[int]]:
        """The methods without all of Retrain's seeds, with the seeds they have: rows of a benchmark still running
        or cut off (``bench`` writes after every row), whose means would be over other seeds."""
        reference = sorted(r.seed for r in self.of(REFERENCE))
        seeds = {m: sorted(r.seed for r in self.of(m)) for m in self.methods()}
        return {m: s for m, s in seeds.items() if s != reference}

    def failed(self, method: str) -> bool:
        """True when ``method`` did not get closer to Retrain than doing nothing (the Original row)."""
        return method not in (REFERENCE, ORIGINAL) and not self.mean_gap(method) < self.mean_gap(ORIGINAL)


def label_of(method: str) -> str:
    return ORIGINAL_LABEL if method == ORIGINAL else get_method(method).label


def resolve_methods(text: str) -> list[str]:
    """``all`` or a comma list; Retrain is always run first, as the reference."""
    names = method_names() if text.strip() == "all" else [m.strip() for m in text.split(",") if m.strip()]
    for n in names:
        get_method(n)
    return [REFERENCE] + [n for n in names if n != REFERENCE]


def check_benchmark(methods: list[str], forget: str, seeds: list[int], overrides: dict[str, dict] | None = None,
                    holdout: Holdout = "test") -> None:
    """Everything about a benchmark that can be checked without data: seeds, methods, overrides, forget set."""
    if not seeds:
        raise WssclError("The benchmark needs at least one seed.")
    unknown = set(overrides or {}) - set(methods)
    if unknown:
        raise WssclError(f"--set names methods that are not benchmarked: {', '.join(sorted(unknown))}.")
    if REFERENCE not in methods:
        raise WssclError("The benchmark needs Retrain as its reference.")
    for name in methods:
        for seed in seeds:
            check(RunRequest.parse(name, forget, (overrides or {}).get(name), seed, holdout))


def prepare_benchmark(ws: Workspace, methods: list[str], forget: str, seeds: list[int],
                      overrides: dict[str, dict] | None = None, holdout: Holdout = "test") -> list[list[PreparedRun]]:
    """Every run of the benchmark, checked before any of them starts (one list per seed, Retrain first)."""
    check_benchmark(methods, forget, seeds, overrides, holdout)
    return [[prepare(ws, RunRequest.parse(name, forget, (overrides or {}).get(name), seed, holdout))
             for name in [REFERENCE] + [m for m in methods if m != REFERENCE]] for seed in seeds]


def run_benchmark(ws: Workspace, methods: list[str], forget: str, seeds: list[int],
                  overrides: dict[str, dict] | None = None,
                  progress_for: Callable[[str, int], ProgressFn | None] = lambda m, s: None,
                  cancel: CancelFlag | None = None, holdout: Holdout = "test",
                  on_row: Callable[[BenchResult], None] | None = None) -> BenchResult:
    """Each method on each seed's split, scored against that seed's Retrain, with the untouched original as a row.

    ``on_row`` receives the table so far after every finished row, so a long benchmark that is stopped
    or cut off keeps the rows it finished.
    """
    result = BenchResult(forget, ws.data.name, ws.model_name, [], list(ws.data.classes), holdout)

    def add(row: BenchRow) -> None:
        result.rows.append(row)
        if on_row is not None:
            on_row(result)

    for prepared_runs in prepare_benchmark(ws, methods, forget, seeds, overrides, holdout):
        reference = execute(ws, prepared_runs[0], progress_for(REFERENCE, prepared_runs[0].request.seed), cancel)
        add(BenchRow.of(reference, reference))
        first = prepared_runs[0]
        add(BenchRow.of(original_result(ws, first.split, first.request), reference))
        for prepared in prepared_runs[1:]:
            outcome = execute(ws, prepared, progress_for(prepared.request.method, prepared.request.seed), cancel)
            add(BenchRow.of(outcome, reference))
    return result


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def mean_std_cell(values: list[float], reference: float | None = None, digits: int = 2) -> str:
    """A table cell: the mean over seeds, ± the standard deviation when there are several, and the gap to
    ``reference`` in brackets when given."""
    mean, std = _mean_std(values)
    text = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if len(values) > 1 else "")
    if reference is not None:
        text += f" ({abs(mean - reference):.{digits}f})"
    return text


def table_markdown(result: BenchResult) -> str:
    """Table 1 layout: UA, RA, TA, MIA (gap to Retrain in brackets), loss-attack AUC, Avg.Gap, RTE, RTE/Retrain.

    The untouched original is a row; a method whose Avg.Gap is not below it is marked as failed.
    """
    ref_rows = result.of(REFERENCE)
    ref = {k: _mean_std([r.scores[k] for r in ref_rows])[0] for k in (*METRIC_KEYS, "MIA_AUC")}
    ref_time = _mean_std([r.rte_s for r in ref_rows])[0]
    class_forgetting = result.forget.startswith("class")
    # class forgetting: TA on the kept classes enters Avg.Gap (the papers' convention); TA on all classes is shown too
    ta_head, extra = ("TA (all classes)", ["TA (kept classes)"]) if class_forgetting else ("TA", [])
    head = ["Method", "UA", "RA", ta_head, "MIA", *extra, "Loss-attack AUC", "Avg.Gap", "RTE (s)", "RTE / Retrain"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in result.methods():
        rows = result.of(method)
        is_ref = method == REFERENCE
        cells = [label_of(method)]
        cells += [mean_std_cell([r.scores[k] for r in rows], None if is_ref else ref[k]) for k in METRIC_KEYS]
        if class_forgetting:
            ref_kept = _mean_std([r.scores["TA_remaining"] for r in ref_rows])[0]
            cells.append(mean_std_cell([r.scores["TA_remaining"] for r in rows], None if is_ref else ref_kept))
        cells.append(mean_std_cell([r.scores["MIA_AUC"] for r in rows], None if is_ref else ref["MIA_AUC"], digits=3))
        cells.append(mean_std_cell([r.avg_gap for r in rows]) + (f" {FAILED_MARK}" if result.failed(method) else ""))
        rte = _mean_std([r.rte_s for r in rows])[0]
        cells += ["—" if method == ORIGINAL else mean_std_cell([r.rte_s for r in rows], digits=1),
                  "—" if method == ORIGINAL or not ref_time else f"{rte / ref_time:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({r.seed for r in result.rows})
    failed = [label_of(m) for m in result.methods() if result.failed(m)]
    lines.append("")
    lines.append(f"{result.dataset}, model {result.model}, forget {result.forget}, seeds {seeds}; "
                 "mean ± std over seeds, (gap to Retrain) in brackets; UA, RA, TA, MIA and Avg.Gap in %, "
                 "loss-attack AUC as a fraction (Retrain's value is the target)."
                 + (" Held-out images: validation images, not the reported test set (a check on tuning splits)."
                    if result.holdout == "val" else ""))
    lines.append(f"{FAILED_MARK} = Avg.Gap not below the Original row: the method failed on this setting"
                 + (f" ({', '.join(failed)})." if failed else " (none did)."))
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
        lines.append(f"| {label_of(method)} | " +
                     " | ".join("—" if math.isnan(v) else f"{v:.1f}" for v in per_class) + " |")
    lines.append("")
    lines.append("Test accuracy per class in % (mean over seeds); * = forgotten class.")
    return "\n".join(lines)


def read_outputs(json_path: str | Path) -> BenchResult:
    """A benchmark back from the JSON that :func:`write_outputs` wrote, to merge or summarise it."""
    document = json.loads(Path(json_path).read_text())
    return BenchResult(document["forget"], document["dataset"], document["model"],
                       [BenchRow(**row) for row in document["rows"]], document["classes"],
                       document.get("holdout", "test"))  # files written before the field scored on the test set


def write_outputs(result: BenchResult, out_dir: str | Path) -> list[Path]:
    """Per-seed rows as CSV and everything as JSON, written together atomically."""
    out = Path(out_dir)
    stem = f"{result.dataset}_{result.model}_{result.forget.replace(':', '-').replace(',', '_')}"
    stem += "_val" if result.holdout == "val" else ""  # never in place of a table's files
    csv_path, json_path = out / f"{stem}.csv", out / f"{stem}.json"
    table = io.StringIO()
    w = csv.writer(table)
    extra = sorted({k for r in result.rows for k in r.scores} - set(METRIC_KEYS))
    w.writerow(["method", "seed", *METRIC_KEYS, *extra, "avg_gap", "rte_s"])
    for r in result.rows:
        w.writerow([r.method, r.seed, *(f"{r.scores[k]:.4f}" for k in METRIC_KEYS),
                    *(f"{r.scores.get(k, float('nan')):.4f}" for k in extra), f"{r.avg_gap:.4f}", f"{r.rte_s:.3f}"])
    document = json.dumps({"forget": result.forget, "dataset": result.dataset, "model": result.model,
                           "classes": result.classes, "holdout": result.holdout,
                           "rows": [r.__dict__ for r in result.rows]}, indent=1)
    return atomic_write_files([(csv_path, table.getvalue()), (json_path, document)])
