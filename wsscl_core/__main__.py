"""Command line: ``python -m wsscl_core train | unlearn | bench`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

from .bench import per_class_markdown, resolve_methods, run_benchmark, table_markdown, write_outputs
from .checkpoints import DEFAULT_MODEL_FILE, model_metadata, save_checkpoint
from .data import DEFAULT_DATASET, ForgetSpec, dataset_names, load_dataset, make_forget_split
from .engine import ProgressEvent, TrainRecipe
from .errors import WssclError
from .methods import METHODS, make_config, run_unlearning
from .metrics import evaluate
from .models import MODELS
from .workspace import open_workspace, train_original


class ProgressBar:
    """Renders engine events on stderr: a live bar on a terminal, a line every few seconds otherwise."""

    def __init__(self, title: str = "", stream=sys.stderr, width: int = 28) -> None:
        self.title, self.stream, self.width = title, stream, width
        self.tty = stream.isatty()
        self.last_line = 0.0

    def __call__(self, e: ProgressEvent) -> None:
        frac = e.step / max(e.total_steps, 1)
        filled = int(frac * self.width)
        bar = "█" * filled + "·" * (self.width - filled)
        losses = " ".join(f"{k} {v:.3f}" for k, v in e.losses.items() if k != "loss" or len(e.losses) == 1)
        accs = " ".join(f"{k} {v:.1f}%" for k, v in e.metrics.items() if k.endswith("_acc"))
        eta = f"ETA {e.eta_s:.0f}s" if e.eta_s is not None else ""
        line = (f"{self.title}[{e.phase_index + 1}/{e.num_phases} {e.phase_label}] {bar} {100 * frac:3.0f}% "
                f"ep {min(e.epoch + 1, e.epochs)}/{e.epochs} {losses} {accs} {e.elapsed_s:.0f}s {eta}")
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


def cmd_train(args: argparse.Namespace) -> None:
    data = load_dataset(args.dataset, root=args.data_root)
    recipe = TrainRecipe(**{k: v for k, v in (("epochs", args.epochs), ("lr", args.lr), ("batch_size", args.batch_size))
                            if v is not None})
    model, meta = train_original(data, args.model, recipe, seed=args.seed, device=args.device,
                                 on_progress=ProgressBar(), cancel=_cancel_on_interrupt())
    save_checkpoint(args.out, model, meta)
    print(f"test accuracy {meta['metrics']['TA']:.2f}% after {meta['train_seconds']:.0f}s; saved {args.out}")


def cmd_unlearn(args: argparse.Namespace) -> None:
    ws = open_workspace(args.checkpoint, args.dataset, device=args.device, data_root=args.data_root)
    split = make_forget_split(ws.data.train.labels, ForgetSpec.parse(args.forget, args.seed), ws.data.num_classes)
    cfg = make_config(args.method, _parse_overrides(args.set), split.scenario)
    print(f"{ws.data.name}: forgetting {split.num_forget} samples ({split.spec}), retaining {split.num_retain}",
          file=sys.stderr)
    out = run_unlearning(args.method, ws.context(split, args.seed, ProgressBar(), _cancel_on_interrupt()), cfg)
    ev = evaluate(out.model, ws.data, split, seed=args.seed)
    result = {"method": args.method, "forget": split.spec.describe(), "hyperparameters": dict(cfg.__dict__),
              "rte_s": round(out.seconds, 3), "metrics": ev.to_dict(), "original": args.checkpoint or str(DEFAULT_MODEL_FILE)}
    stem = Path(args.out or f"runs/{args.method}_{str(split.spec).replace(':', '-')}_s{args.seed}.pt")
    meta = model_metadata(ws.model_name, ws.data, recipe=ws.recipe.to_dict(), seed=args.seed, method=args.method,
                          forget=split.spec.describe(), hyperparameters=dict(cfg.__dict__), metrics=ev.scores(),
                          rte_s=round(out.seconds, 3))
    save_checkpoint(stem, out.model, meta)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    print(json.dumps({**ev.scores(), "rte_s": round(out.seconds, 2)}))
    print(f"saved {stem} and {stem.with_suffix('.json')}", file=sys.stderr)


def cmd_bench(args: argparse.Namespace) -> None:
    ws = open_workspace(args.checkpoint, args.dataset, device=args.device, data_root=args.data_root)
    methods = resolve_methods(args.methods)
    seeds = list(range(args.seed, args.seed + args.seeds))
    overrides: dict[str, dict] = {}
    for item in args.set:
        method, _, kv = item.partition(".")
        overrides.setdefault(method, {}).update(_parse_overrides([kv]))
    cancel = _cancel_on_interrupt()
    result = run_benchmark(ws, methods, args.forget, seeds, overrides,
                           progress_for=lambda m, s: ProgressBar(f"{m} s{s} "), cancel=cancel)
    print(table_markdown(result))
    if args.forget.startswith("class"):
        print()
        print(per_class_markdown(result))
    for path in write_outputs(result, args.out_dir):
        print(f"wrote {path}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m wsscl_core", description="Machine unlearning: train, unlearn, benchmark.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
        sp.add_argument("--data-root", default=None, help="folder for dataset files (default ./data or $WSSCL_DATA)")
        sp.add_argument("--seed", type=int, default=0)

    t = sub.add_parser("train", help="train an original model", description="Train an original model on a whole train split.")
    t.add_argument("--dataset", default=DEFAULT_DATASET, help=f"one of {', '.join(dataset_names())}")
    t.add_argument("--model", default="compact", choices=list(MODELS))
    t.add_argument("--epochs", type=int, default=None, help=f"default {TrainRecipe.epochs}")
    t.add_argument("--lr", type=float, default=None, help=f"default {TrainRecipe.lr}")
    t.add_argument("--batch-size", type=int, default=None, help=f"default {TrainRecipe.batch_size}")
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
    common(b)
    b.set_defaults(fn=cmd_bench)
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
