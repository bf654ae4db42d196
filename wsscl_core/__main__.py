"""Command line: ``python -m wsscl_core train | unlearn | bench | tune`` (``--help`` on each).

Every argument is checked before any data is loaded or any model trained; a user error ends with one
line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, get_args

from .bench import (BenchResult, check_benchmark, label_of, per_class_markdown, resolve_methods, run_benchmark,
                    table_markdown, write_outputs)
from .checkpoints import save_checkpoint
from .data import DATASETS, DEFAULT_DATASET, HOLDOUTS, dataset_names, load_dataset
from .engine import RECIPES, ProgressEvent, Schedule, TrainRecipe
from .errors import WssclError
from .fileio import atomic_write_text, check_output_dir, check_output_paths
from .methods import METHODS, get_method, literal_choices
from .models import MODELS
from .runs import RunRequest, check, execute, prepare, result_metadata
from .workspace import open_workspace, train_original


class ProgressBar:
    """Renders engine events on stderr: a live bar on a terminal, a line every few seconds otherwise."""

    def __init__(self, title: str = "", stream=None, width: int = 28) -> None:
        self.title, self.stream, self.width = title, stream or sys.stderr, width
        self.tty = self.stream.isatty()
        self.last_line = 0.0

    def __call__(self, e: ProgressEvent) -> None:
        frac = e.step / max(e.total_steps, 1)
        filled = int(frac * self.width)
        bar = "█" * filled + "·" * (self.width - filled)
        losses = " ".join(f"{k} {v:.3f}" for k, v in e.losses.items() if k != "loss" or len(e.losses) == 1)
        accs = " ".join(f"{k} {v:.1f}%" for k, v in e.metrics.items() if k.endswith("_acc"))
        eta = f"ETA {e.eta_s:.0f}s" if e.eta_s is not None else ""
        stopped = (f" stopped by its rule: forget {e.metrics['stop_forget_accuracy']:.1f}% ≤ held-out "
                   f"{e.metrics['stop_holdout_accuracy']:.1f}%" if "stopped_at_step" in e.metrics else "")
        line = (f"{self.title}[{e.phase_index + 1}/{e.num_phases} {e.phase_label}] {bar} {100 * frac:3.0f}% "
                f"ep {min(e.epoch + 1, e.epochs)}/{e.epochs} {losses} {accs} {e.elapsed_s:.0f}s {eta}{stopped}")
        if self.tty:
            self.stream.write("\r\033[K" + line + ("\n" if e.kind in ("phase_end",) else ""))
            self.stream.flush()
        elif e.kind == "phase_end" or time.monotonic() - self.last_line > 5:
            self.stream.write(line + "\n")
            self.stream.flush()
            self.last_line = time.monotonic()


def _cancel_on_interrupt() -> threading.Event:
    """Ctrl-C sets the engine's cancel flag, so a run stops cleanly between steps."""
    flag = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: flag.set())
    return flag


def _parse_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise WssclError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _recipe(args: argparse.Namespace) -> TrainRecipe:
    """The named recipe with every field given on the command line replaced, validated."""
    chosen = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainRecipe) if getattr(args, f.name) is not None}
    return dataclasses.replace(RECIPES[args.recipe], **chosen).validate()


def _check_seed(seed: int) -> None:
    if seed < 0:
        raise WssclError(f"--seed must be 0 or more, got {seed}.")


def _check_dataset(name: str | None) -> None:
    if name is None or name in DATASETS:
        return
    if not name.startswith("folder:"):
        raise WssclError(f"Unknown dataset {name!r}; choose one of {', '.join(dataset_names())}.")


def cmd_train(args: argparse.Namespace) -> None:
    _check_seed(args.seed)
    _check_dataset(args.dataset)
    recipe = _recipe(args)
    check_output_paths(args.out, names=("the checkpoint",))
    data = load_dataset(args.dataset, root=args.data_root)
    model, meta = train_original(data, args.model, recipe, seed=args.seed, device=args.device,
                                 on_progress=ProgressBar(), cancel=_cancel_on_interrupt())
    save_checkpoint(args.out, model, meta)
    print(f"train accuracy {meta['metrics']['RA']:.2f}%, test accuracy {meta['metrics']['TA']:.2f}% "
          f"after {meta['seconds']:.0f}s; saved {args.out}")


def cmd_unlearn(args: argparse.Namespace) -> None:
    request = RunRequest.parse(args.method, args.forget, _parse_overrides(args.set), args.seed)
    check(request)
    _check_dataset(args.dataset)
    stem = Path(args.out or f"runs/{args.method}_{str(request.forget).replace(':', '-')}_s{args.seed}.pt")
    json_path = stem.with_suffix(".json")
    check_output_paths(stem, json_path, names=("the checkpoint", "the metrics JSON"))
    ws = open_workspace(args.checkpoint, args.dataset, device=args.device, data_root=args.data_root)
    prepared = prepare(ws, request)
    split = prepared.split
    print(f"{ws.data.name}: forgetting {split.num_forget} samples ({split.spec}), retaining {split.num_retain}",
          file=sys.stderr)
    result = execute(ws, prepared, ProgressBar(), _cancel_on_interrupt())
    # the checkpoint and its metrics land together: the JSON is renamed into place last
    save_checkpoint(stem, result.model, result_metadata(ws, result),
                    extra_files=[(json_path, json.dumps(result.summary(), indent=1))])
    print(json.dumps({**result.scores(), "rte_s": round(result.rte_s, 2)}))
    print(f"saved {stem} and {json_path}", file=sys.stderr)


def bench_overrides(items: list[str]) -> dict[str, dict]:
    overrides: dict[str, dict] = {}
    for item in items:
        method, dot, kv = item.partition(".")
        if not dot:
            raise WssclError(f"--set expects METHOD.KEY=VALUE, got {item!r}")
        get_method(method)
        overrides.setdefault(method, {}).update(_parse_overrides([kv]))
    return overrides


def cmd_bench(args: argparse.Namespace) -> None:
    _check_seed(args.seed)
    if args.seeds < 1:
        raise WssclError(f"--seeds must be at least 1, got {args.seeds}.")
    _check_dataset(args.dataset)
    methods = resolve_methods(args.methods)
    overrides = bench_overrides(args.set)
    seeds = list(range(args.seed, args.seed + args.seeds))
    check_benchmark(methods, args.forget, seeds, overrides, args.holdout)
    check_output_dir(args.out_dir, "--out-dir")
    ws = open_workspace(args.checkpoint, args.dataset, device=args.device, data_root=args.data_root)
    cancel = _cancel_on_interrupt()

    def keep_rows(partial: BenchResult) -> None:
        """Each finished row is written at once: an interrupted benchmark keeps what it finished."""
        row = partial.rows[-1]
        paths = write_outputs(partial, args.out_dir)
        print(f"{label_of(row.method)} s{row.seed}: Avg.Gap {row.avg_gap:.2f}, RTE {row.rte_s:.1f} s "
              f"({len(partial.rows)} rows in {paths[-1]})", file=sys.stderr, flush=True)

    result = run_benchmark(ws, methods, args.forget, seeds, overrides,
                           progress_for=lambda m, s: ProgressBar(f"{m} s{s} "), cancel=cancel, holdout=args.holdout,
                           on_row=keep_rows)
    print(table_markdown(result))
    if args.forget.startswith("class"):
        print()
        print(per_class_markdown(result))


def _trial_line(method: str, done: int, total: int, value: float, best: float, seconds: float) -> None:
    print(f"[{method}] trial {done}/{total}: Avg.Gap {value:.3f} (best {best:.3f}), {seconds:.0f} s so far",
          file=sys.stderr, flush=True)


def cmd_tune(args: argparse.Namespace) -> None:
    from . import tune

    if args.report:
        atomic_write_text(args.report, tune.tuning_report(args.storage, args.trials))
        print(f"wrote {args.report}", file=sys.stderr)
        return
    if args.trials < 1:
        raise WssclError(f"--trials must be at least 1, got {args.trials}.")
    if args.workers < 1:
        raise WssclError(f"--workers must be at least 1, got {args.workers}.")
    methods = tune.tunable_methods(args.methods)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    for name in datasets:
        _check_dataset(name)
    scenario = tune.scenario_of(args.forget)
    seeds = list(range(args.seed, args.seed + args.seeds))
    if args.seed < tune.TUNING_SEED:
        raise WssclError(f"Tuning seeds start at {tune.TUNING_SEED} or above (--seed), so that they never "
                         "coincide with the seeds the reported tables use.")
    if args.confirm_on and args.rescore:
        raise WssclError("--confirm-on and --rescore are two separate runs: give one of them.")
    if (args.confirm_on or args.rescore) and args.workers > 1:
        raise WssclError(f"{'--confirm-on' if args.confirm_on else '--rescore'} runs one point per study: share it out "
                         "with --methods, not --workers.")
    _ensure_sqlite_folder(args.storage)
    helpers = _start_workers(args) if args.workers > 1 else []
    cache = Path(args.cache_dir)
    settings = tune.open_settings(datasets, args.checkpoint, cache, args.device, args.data_root)
    cancel = _cancel_on_interrupt()
    storage = tune.open_storage(args.storage)
    options = tune.round_options(args.plain_rounds, args.schedule, args.lr_per_forget_sample, args.forget_pass_floor)
    if options and args.methods.strip() == "all":  # IU trains in no rounds (FT none on D_f); named, it is refused
        methods = [m for m in methods if tune.has_rounds(m, options)]
    if args.confirm_on:  # no trials: the chosen points of every round option again, on fresh points
        fresh_seeds = list(range(args.confirm_seed, args.confirm_seed + args.seeds))

        def scored(study: Any, trial: Any) -> None:
            print(f"{tune.study_label(study)}: mean Avg.Gap {trial.value:.3f} on {args.confirm_on}, seeds {fresh_seeds} "
                  f"at {trial.params}", flush=True)

        for method in (m for m in methods if tune.has_rounds(m)):
            if not tune.confirm_round_options(storage, method, args.forget, settings, args.confirm_on, fresh_seeds,
                                              cancel, scored):
                print(f"{get_method(method).label}: no round option scores lower than the base; nothing to confirm")
    elif args.rescore:  # no trials: chosen points scored elsewhere, again here, for the variants scored here

        def rescored(study: Any, trial: Any) -> None:
            print(f"{tune.study_label(study)}: mean Avg.Gap {trial.value:.3f} here on {study.user_attrs['forget']}, "
                  f"seeds {study.user_attrs['seeds']} ({study.user_attrs['recorded_value']:.3f} as recorded on "
                  "another machine)", flush=True)

        for method in (m for m in methods if tune.has_rounds(m)):
            if not tune.rescore_parts(storage, method, args.forget, settings, cancel, rescored):
                print(f"{get_method(method).label}: no variant scored here is judged against a study scored elsewhere")
    else:
        for method in methods:
            study = tune.tune_method(method, args.forget, settings, args.trials, storage, seeds, cancel, _trial_line,
                                     worker=args.worker_index, options=options)
            best = tune.best_trial(study, args.trials)
            if best is None:
                print(f"{tune.study_label(study)}: no trial finished with a finite Avg.Gap")
                continue
            print(f"{tune.study_label(study)}: best mean Avg.Gap {best.value:.3f} (trial #{best.number}, the best of "
                  f"the first {args.trials} finished) with {dict(best.params)}")
    for helper in helpers:
        helper.wait()
    if args.write_defaults:
        chosen = {}
        for method in methods:
            choice = tune.chosen_values(storage, method, args.forget, settings,
                                        on_refused=lambda text: print(text, file=sys.stderr))
            if choice is not None:
                chosen[method] = choice[0]
                print(f"{get_method(method).label}: the defaults file gets {choice[0]} ({choice[1]:.3f})",
                      file=sys.stderr)
        tune.write_defaults(chosen, scenario)
        print(f"wrote the {scenario} defaults of {', '.join(chosen)}", file=sys.stderr)


def _ensure_sqlite_folder(storage: str) -> None:
    if storage.startswith("sqlite:///"):
        Path(storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)


def _start_workers(args: argparse.Namespace) -> list[subprocess.Popen]:
    """``--workers K``: K − 1 more processes of the same command on the same study store (Optuna shares the
    trials through the store); each gets its share of the CPU threads."""
    threads = max(1, (os.cpu_count() or 1) // args.workers)
    argv = [a for a in sys.argv[1:] if a != "--write-defaults"]
    argv += ["--workers", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return [subprocess.Popen([sys.executable, "-m", "wsscl_core", *argv, "--worker-index", str(i)], env=env)
            for i in range(1, args.workers)]


def _recipe_options(parser: argparse.ArgumentParser) -> None:
    """One option per field of the training recipe, read from the dataclass (``--augment/--no-augment`` etc.)."""
    choices = literal_choices(TrainRecipe)
    for f in dataclasses.fields(TrainRecipe):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(RECIPES["memorise"], f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=f"memorise recipe: {default}")
        elif f.name in choices:
            parser.add_argument(flag, default=None, choices=list(choices[f.name]), help=f"memorise recipe: {default}")
        else:
            parser.add_argument(flag, type=type(default), default=None, help=f"memorise recipe: {default}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wsscl_core",
                                description="Machine unlearning: train, unlearn, benchmark, tune.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
        sp.add_argument("--data-root", default=None, help="folder for dataset files (default ./data or $WSSCL_DATA)")
        sp.add_argument("--seed", type=int, default=0)

    t = sub.add_parser("train", help="train an original model", description="Train an original model on a whole train split.")
    t.add_argument("--dataset", default=DEFAULT_DATASET, help=f"one of {', '.join(dataset_names())}")
    t.add_argument("--model", default="compact", choices=list(MODELS))
    t.add_argument("--recipe", default="memorise", choices=list(RECIPES),
                   help="named recipe; the options below replace single fields of it (default: memorise, the "
                        "papers' regime: no augmentation, train accuracy ≈ 100 %%)")
    _recipe_options(t)
    t.add_argument("--out", required=True, help="checkpoint path to write")
    common(t)
    t.set_defaults(fn=cmd_train)

    method_help = ", ".join(METHODS)
    u = sub.add_parser("unlearn", help="unlearn a forget set from a checkpoint",
                       description="Unlearn a forget set; writes the unlearned checkpoint and a metrics JSON.")
    u.add_argument("--checkpoint", default=None, help="original model (default: the shipped one)")
    u.add_argument("--method", required=True, help=method_help)
    u.add_argument("--forget", required=True, help="class:K, class:K1,K2 or random:FRACTION")
    u.add_argument("--dataset", default=None, help="default: the checkpoint's dataset")
    u.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a hyperparameter")
    u.add_argument("--out", default=None, help="unlearned checkpoint path (default runs/...)")
    common(u)
    u.set_defaults(fn=cmd_unlearn)

    b = sub.add_parser("bench", help="benchmark methods against Retrain",
                       description="Every method vs Retrain on the same splits; prints the paper's table layout.")
    b.add_argument("--methods", default="all", help=f"'all' or a comma list of: {method_help}")
    b.add_argument("--forget", default="random:0.1", help="class:K or random:FRACTION")
    b.add_argument("--seeds", type=int, default=1, help="number of seeds (split and training seeds), from --seed")
    b.add_argument("--checkpoint", default=None, help="original model (default: the shipped one)")
    b.add_argument("--dataset", default=None, help="default: the checkpoint's dataset")
    b.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE", help="override a hyperparameter")
    b.add_argument("--out-dir", default="bench-results", help="where the CSV/JSON files go")
    b.add_argument("--holdout", default="test", choices=list(HOLDOUTS),
                   help="held-out images for TA and the attacks: the reported test set, or validation images "
                        "(val: checks on tuning splits, --seed 100 and up; files end in _val)")
    common(b)
    b.set_defaults(fn=cmd_bench)

    from .tune import CONFIRMATION_SEED, DEFAULT_STORAGE, TUNING_SEED

    tu = sub.add_parser("tune", help="tune hyperparameters on Optuna (same budget for every method)",
                        description="Search each method's hyperparameters with Optuna, on validation images and "
                                    "split seeds that the reported tables never use. Resumable: finished trials in "
                                    "the store count towards --trials. Start the same command on several machines "
                                    "with one --storage URL to share the work.")
    tu.add_argument("--methods", default="all", help=f"'all' or a comma list of: {method_help}")
    tu.add_argument("--forget", default="random:0.1",
                    help="class:K or random:FRACTION (tune on a class the tables do not report); several joined "
                         "by + (random:0.1+random:0.5) make one objective, so the values must suit every one")
    tu.add_argument("--trials", type=int, default=20, help="finished trials per method (the same for every method)")
    tu.add_argument("--storage", default=DEFAULT_STORAGE, help="Optuna study store: an SQLite file or any "
                                                               "SQLAlchemy URL (e.g. postgresql://...)")
    tu.add_argument("--workers", type=int, default=1, help="processes on this machine sharing the store")
    tu.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)  # set by --workers for its helpers
    tu.add_argument("--datasets", default=f"{DEFAULT_DATASET},digits",
                    help="tuning settings: the first uses --checkpoint, the others an original trained with the "
                         "default recipe (cached in --cache-dir)")
    tu.add_argument("--checkpoint", default=None, help="original model of the first dataset (default: the shipped one)")
    tu.add_argument("--seeds", type=int, default=2, help="split seeds per trial, from --seed")
    tu.add_argument("--cache-dir", default="tuning", help="where trained originals of the other datasets are kept")
    tu.add_argument("--write-defaults", action="store_true", help="store each method's best values for this "
                                                                   "scenario in the defaults file the configs read")
    tu.add_argument("--plain-rounds", action="store_true",
                    help="score in separate studies with rounds that do not augment (with --trials 1: each "
                         "method's chosen point once more); --write-defaults keeps a variant only if it scores "
                         "lower than the base by a clear margin (two standard errors of its per-split gains)")
    tu.add_argument("--schedule", choices=get_args(Schedule), default="constant",
                    help="the learning rate over each unlearning phase; other than constant, score in separate "
                         "studies as --plain-rounds does (the two combine)")
    tu.add_argument("--lr-per-forget-sample", action="store_true",
                    help="score in separate studies as --plain-rounds does, with learning rates that count per "
                         "forget sample (scaled by 0.1 / the forget set's share of the train split); methods with "
                         "rounds on the forget set only")
    tu.add_argument("--forget-pass-floor", action="store_true",
                    help="score in separate studies as --plain-rounds does, with phases on the forget set that take at "
                         "least the steps per epoch of a pass over 1,000 images (a smaller forget set repeats its "
                         "epochs); methods with rounds on the forget set only")
    tu.add_argument("--confirm-on", default=None, metavar="FORGET",
                    help="instead of trials: where a round-option variant scores lower than the base on the "
                         "objective (--forget), score each of the method's round options on these fresh forget sets "
                         "(the same sizes, or other classes), so that --write-defaults judges the margin over both")
    tu.add_argument("--rescore", action="store_true",
                    help="instead of trials: score again on this machine each chosen point (and its confirmation's "
                         "fresh points) that a round-option variant scored here is judged against but that was "
                         "scored on another machine, so that --write-defaults compares them on one machine")
    tu.add_argument("--confirm-seed", type=int, default=CONFIRMATION_SEED,
                    help="first split seed of the fresh points (--seeds of them)")
    tu.add_argument("--report", default=None, metavar="PATH", help="only write the Markdown report of the store "
                                                                   "(docs/TUNING.md) and exit")
    common(tu)
    tu.set_defaults(fn=cmd_tune, seed=TUNING_SEED)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except WssclError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
