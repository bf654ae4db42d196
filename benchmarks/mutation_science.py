"""Mutation testing of the science: saliency, metrics, the engine's mask and optimiser step, the methods.

mutmut is a development tool, not a requirement of the project; install it into the same environment:

    pip install "mutmut==3.8.1"
    python benchmarks/mutation_science.py                       # everything below, ~40 min on 2 cores
    python benchmarks/mutation_science.py --only saliency metrics --max-children 2

Everything happens in a scratch copy, ``bench-results/mutation-science/`` (ignored by git): the
package, the fast science tests and a ``setup.cfg`` for mutmut. The repository's files are never
mutated, and nothing here runs in CI or in the normal ``pytest`` run. The results go to
``bench-results/mutation-science/summary.json`` and, with the diff of every survivor,
``survivors.txt``; docs/MUTATION.md records a run.

Scope, in priority order: ``wsscl_core/saliency.py``, ``wsscl_core/metrics.py``, from
``wsscl_core/engine.py`` only the masked update, the learning-rate schedule, the optimiser's
set-up and step inside ``run_phases`` and the augmentation (every other engine line gets a
``# pragma: no mutate`` in the copy), then ``wsscl_core/methods/``. mutmut 3
never mutates a decorated function, so the bodies of the ``@register`` method functions and the
``@torch.no_grad`` predictors are outside any run; the hand mutations listed in docs/MUTATION.md
cover them.

Two settings keep the run short: mutmut runs only the tests that reach the mutated function, and
the copied conftest trains the digits original once per process (mutants fork from it) instead of
once per mutant, so an engine mutant changes the unlearning runs but not the original they start
from.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import tokenize
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench-results" / "mutation-science"
SCOPES = {
    "saliency": ["wsscl_core/saliency.py"],
    "metrics": ["wsscl_core/metrics.py"],
    "engine": ["wsscl_core/engine.py"],
    "methods": ["wsscl_core/methods/*"],
}
TESTS = ["tests/test_science.py", "tests/test_science_methods.py", "tests/test_saliency.py", "tests/test_metrics.py",
         "tests/test_engine.py", "tests/test_methods.py"]
# Lines of engine.py that are mutated; each (first, last) pair of patterns marks an inclusive span.
ENGINE_SPANS = [
    (r"^def augment_batch\(", r"^    return x$"),
    (r"^    def lr_at\(", r"^        return self\.lr$"),
    (r"^def masked_update_\(", r"^            g\.mul_\(m\)$"),
    (r"^        named = \[\(n, p\) for n, p in self\.model\.named_parameters\(\)", r"weight_decay=0\.0\)$"),
    (r"^                    for group in optimiser\.param_groups:", r"group\[\"lr\"\] = phase\.lr_at\(step, total\)$"),
    (r"^    def _step\(", r"^        optimiser\.step\(\)$"),
]
SKIP_MARK = "(outside the mutated engine spans)"
# Appended to the copied conftest: the digits original is trained once per process (conftest may be
# re-imported by each pytest session, so the cache lives in a module of its own), and mutants fork from
# the process that ran the clean tests.
CONFTEST_CACHE = '''


# Added by benchmarks/mutation_science.py: one digits original per process, not one per mutant.
import sys as _sys
import types as _types

_CACHE = _sys.modules.setdefault("mutation_science_cache", _types.ModuleType("mutation_science_cache")).__dict__
_train_original = train_original


def train_original(data, model_name="compact", recipe=None, seed=0, device="auto"):
    key = (data.name, model_name, repr(recipe), seed, str(device))
    if key not in _CACHE:
        _CACHE[key] = _train_original(data, model_name, recipe, seed, device)
    model, meta = _CACHE[key]
    return copy.deepcopy(model), dict(meta)
'''


def _span_lines(lines: list[str], first: str, last: str) -> range:
    start = next((i for i, line in enumerate(lines) if re.search(first, line)), None)
    if start is None:
        raise SystemExit(f"engine.py has no line matching {first!r}: update ENGINE_SPANS to the new engine.")
    end = next((i for i in range(start, len(lines)) if re.search(last, lines[i])), None)
    if end is None:
        raise SystemExit(f"engine.py has no line matching {last!r} after {first!r}: update ENGINE_SPANS.")
    return range(start, end + 1)


def _lines_inside_strings(source: str) -> set[int]:
    """0-based lines that end inside a multi-line string (a comment there would join the string)."""
    inside: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.end[0] > tok.start[0] and tok.type != tokenize.NL:
            inside.update(range(tok.start[0] - 1, tok.end[0] - 1))
    return inside


def restrict_engine(path: Path) -> int:
    """Give every engine line outside ENGINE_SPANS a ``# pragma: no mutate`` carrying SKIP_MARK, which
    setup.cfg's do_not_mutate_patterns also names: the pragma covers statements, the pattern every
    expression starting on the line. Returns the number of lines left mutable."""
    source = path.read_text()
    lines = source.splitlines()
    keep = set().union(*(_span_lines(lines, first, last) for first, last in ENGINE_SPANS))
    inside = _lines_inside_strings(source)
    marked = [line if i in keep or i in inside or not line.strip() or line.lstrip().startswith("#")
              else f"{line}  # pragma: no mutate {SKIP_MARK}" for i, line in enumerate(lines)]
    text = "\n".join(marked) + "\n"
    compile(text, str(path), "exec")
    path.write_text(text)
    return len(keep)


def prepare(scopes: list[str]) -> None:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    shutil.copytree(ROOT / "wsscl_core", WORK / "wsscl_core", ignore=shutil.ignore_patterns("__pycache__"))
    (WORK / "tests").mkdir()
    for name in ["tests/conftest.py", *TESTS]:
        shutil.copy2(ROOT / name, WORK / name)
    with (WORK / "tests" / "conftest.py").open("a") as f:
        f.write(CONFTEST_CACHE)
    shutil.copy2(ROOT / "pytest.ini", WORK / "pytest.ini")
    if "engine" in scopes:
        print(f"engine.py: {restrict_engine(WORK / 'wsscl_core' / 'engine.py')} lines left mutable")
    only = [pattern for scope in scopes for pattern in SCOPES[scope]]
    (WORK / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = wsscl_core\n"
        "only_mutate =\n" + "".join(f"    {p}\n" for p in only) +
        "pytest_add_cli_args_test_selection =\n" + "".join(f"    {t}\n" for t in TESTS) +
        "pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    -W\n    ignore::UserWarning\n    -n\n    0\n"  # in-process: mutmut tracks the tests
        "also_copy =\n    pytest.ini\n"
        f"do_not_mutate_patterns =\n    {re.escape(SKIP_MARK)}\n"
    )


def mutmut(*args: str) -> str:
    """Run the mutmut next to this interpreter in the scratch copy; its output is returned."""
    exe = Path(sys.executable).with_name("mutmut")
    if not exe.exists():
        raise SystemExit('mutmut is not installed here: pip install "mutmut==3.8.1"')
    return subprocess.run([str(exe), *args], cwd=WORK, text=True, check=False, capture_output=True).stdout


def report(started: datetime, scopes: list[str]) -> None:
    mutmut("export-cicd-stats")
    stats = json.loads((WORK / "mutants" / "mutmut-cicd-stats.json").read_text())
    listing = mutmut("results", "--all", "true")
    statuses = re.findall(r"^\s+(\S+): (.+)$", listing, re.M)
    by_file: dict[str, dict[str, int]] = {}
    for name, status in statuses:
        module = name.split(".x")[0].rsplit(".", 1)[-1] if ".x" in name else name
        by_file.setdefault(module, {}).setdefault(status, 0)
        by_file[module][status] += 1
    survivors = [name for name, status in statuses if status == "survived"]
    with (WORK / "survivors.txt").open("w") as f:
        for name in survivors:
            f.write(mutmut("show", name) + "\n")
    summary = {"date": started.isoformat(timespec="minutes"), "scopes": scopes,
               "wall_minutes": round((datetime.now(timezone.utc) - started).total_seconds() / 60, 1),
               "totals": stats, "by_module": by_file, "survivors": survivors}
    (WORK / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("date", "scopes", "wall_minutes", "totals", "by_module")}, indent=2))
    print(f"{len(survivors)} survivors, diffs in {WORK / 'survivors.txt'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(SCOPES), default=list(SCOPES),
                        help="parts to mutate (default: all, in this order)")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested in parallel")
    args = parser.parse_args()
    started = datetime.now(timezone.utc)
    prepare(args.only)
    print(f"mutating {', '.join(args.only)}; mutmut's progress goes to {WORK / 'mutmut-run.log'}", flush=True)
    (WORK / "mutmut-run.log").write_text(mutmut("run", "--max-children", str(args.max_children)))
    report(started, args.only)


if __name__ == "__main__":
    main()
