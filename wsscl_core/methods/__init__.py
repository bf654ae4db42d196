"""Unlearning methods, registered by name.

A method is a small module: a config dataclass with its default hyperparameters (the one
defaults table that CLI, studio and docs read) and a function that states its losses as
engine phases. :func:`run_unlearning` gives every method a *copy* of the original model,
so the original is never touched, and times the unlearning step (RTE).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar

import torch

from ..data import Dataset, ForgetSplit, Scenario
from ..engine import CancelFlag, EngineOptions, Phase, ProgressFn, RunStats, TrainRecipe, run_phases
from ..errors import WssclError
from ..models import Classifier

MAX_LR = 10.0
# Output classes a forgetting loss works over: those the retain set still contains, or all K.
TARGET_CLASSES = ("retain", "all")


@dataclass
class MethodConfig:
    """Base for method configs; fields named ``*lr`` / ``*epochs`` / ``*batch_size`` get checked.

    ``epochs`` must be at least 1; other ``*_epochs`` fields (optional stages) may be 0.
    ``CLASS_FORGETTING`` replaces some defaults when the forget set takes a whole class
    (``ForgetSplit.scenario == "class"``): there Retrain forgets everything (UA 100 %), so the
    best schedule differs from random forgetting's, as in SalUn's reference settings.
    """

    CLASS_FORGETTING: ClassVar[dict[str, Any]] = {}

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                raise WssclError(f"{f.name} must be a finite number, got {value}.")
            if f.name.endswith("lr") and not 0 < value <= MAX_LR:
                raise WssclError(f"Learning rate {f.name} must be in (0, {MAX_LR:g}], got {value:g}.")
            min_epochs = 1 if f.name == "epochs" else 0  # a method's optional stages may be switched off
            if f.name.endswith("epochs") and value < min_epochs:
                raise WssclError(f"{f.name} must be at least {min_epochs}, got {value}.")
            if f.name.endswith("batch_size") and value < 1:
                raise WssclError(f"{f.name} must be at least 1, got {value}.")
        target = getattr(self, "target_classes", "all")
        if target not in TARGET_CLASSES:
            raise WssclError(f"target_classes must be one of {', '.join(TARGET_CLASSES)}, got {target!r}.")


@dataclass
class UnlearnContext:
    """Everything a method may use. ``original`` must not be modified (methods get copies)."""

    original: Classifier
    data: Dataset
    split: ForgetSplit
    model_name: str
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    seed: int = 0
    on_progress: ProgressFn | None = None
    cancel: CancelFlag | None = None
    options: EngineOptions | None = None

    @property
    def device(self) -> torch.device:
        return next(self.original.parameters()).device

    def target_classes(self, target: str) -> torch.Tensor | None:
        """The classes a forgetting loss may aim at (on the model's device), or None for all K.

        "retain": the classes D_r still contains — every class for random forgetting, all but the
        removed one(s) when D_f takes a whole class, the only outputs a model trained on D_r alone gives.
        """
        removed = self.split.removed_classes
        if target == "all" or not removed:
            return None
        return torch.tensor([c for c in range(self.data.num_classes) if c not in removed], device=self.device)

    def copy_original(self) -> Classifier:
        return copy.deepcopy(self.original)

    def train(self, model: Classifier, phases: list[Phase]) -> RunStats:
        """Run phases through the one engine with this context's seed, progress and cancel."""
        return run_phases(model, self.data, phases, seed=self.seed, on_progress=self.on_progress,
                          cancel=self.cancel, options=self.options)


@dataclass
class MethodSpec:
    name: str
    label: str
    summary: str
    config_cls: type[MethodConfig]
    run: Callable[[UnlearnContext, Any], Classifier]


METHODS: dict[str, MethodSpec] = {}


def register(name: str, label: str, summary: str, config_cls: type[MethodConfig]):
    """Decorator: ``@register("ft", "FT", "fine-tune on D_r", FTConfig)`` on ``run(ctx, cfg) -> model``."""

    def wrap(fn: Callable[[UnlearnContext, Any], Classifier]):
        METHODS[name] = MethodSpec(name, label, summary, config_cls, fn)
        return fn

    return wrap


def method_names() -> list[str]:
    return list(METHODS)


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise WssclError(f"Unknown method {name!r}; choose one of {', '.join(METHODS)}.")
    return METHODS[name]


def make_config(name: str, overrides: dict[str, Any] | None = None, scenario: Scenario = "random") -> MethodConfig:
    """The method's defaults for ``scenario`` with ``overrides`` applied (strings are converted to the field's type)."""
    spec = get_method(name)
    cfg = spec.config_cls()
    types = {f.name: type(getattr(cfg, f.name)) for f in fields(cfg)}
    defaults = spec.config_cls.CLASS_FORGETTING if scenario == "class" else {}
    for key, value in {**defaults, **(overrides or {})}.items():
        if key not in types:
            raise WssclError(f"{spec.label} has no hyperparameter {key!r}; it has {', '.join(types)}.")
        kind = types[key]
        try:
            if kind is bool and isinstance(value, str):
                value = value.lower() in ("1", "true", "yes", "on")
            elif kind is not type(None):
                value = kind(value)
        except (TypeError, ValueError):
            raise WssclError(f"{key} must be a {kind.__name__}, got {value!r}.") from None
        cfg = dataclasses.replace(cfg, **{key: value})
    cfg.validate()
    return cfg


@dataclass
class UnlearnOutcome:
    model: Classifier
    config: MethodConfig
    seconds: float


def run_unlearning(method: str, ctx: UnlearnContext, config: MethodConfig | dict | None = None) -> UnlearnOutcome:
    """Run ``method`` on a copy of ``ctx.original``; the returned time is the unlearning step alone (RTE)."""
    spec = get_method(method)
    cfg = config if isinstance(config, MethodConfig) else make_config(method, config, ctx.split.scenario)
    torch.manual_seed(ctx.seed)
    start = time.perf_counter()
    model = spec.run(ctx, cfg)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    model.eval()
    return UnlearnOutcome(model, cfg, seconds)


# Importing the modules registers them; the order is the order users see.
from . import retrain, ft, rl, ga, l1_sparse, iu, bs, be, salun, contrastive  # noqa: E402,F401
