"""Unlearning methods, registered by name.

A method is a small module: a config dataclass with its default hyperparameters (the one
defaults table that CLI, studio and docs read) and a function that states its losses as
engine phases. :func:`run_unlearning` gives every method a *copy* of the original model,
so the original is never touched, and times the unlearning step (RTE).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

import torch

from ..data import Dataset, ForgetSplit, Scenario
from ..engine import WEIGHT_DECAY, CancelFlag, Phase, ProgressFn, Round, Schedule, StopRule, TrainRecipe, run_phases
from ..errors import WssclError
from ..models import Classifier

MAX_LR = 10.0
# The forget set's share of the train split at which a learning rate per forget sample equals the rate per
# step (``lr_per_forget_sample``): the 10 % of the random-forgetting benchmark.
REFERENCE_FORGET_FRACTION = 0.1
# The forget set whose steps per pass a smaller one makes up for by repeating its passes
# (``forget_pass_floor``): a class of the shipped subset, and its random 10 %.
REFERENCE_FORGET_IMAGES = 1000
SCENARIOS: tuple[str, ...] = get_args(Scenario)
# Output classes a forgetting loss works over: those the retain set still contains, or all K.
TargetClasses = Literal["retain", "all"]
# When a forgetting phase ends: once D_f's accuracy falls to that of held-out images ("holdout",
# random forgetting only; :class:`~wsscl_core.engine.StopRule`), or after all its epochs ("off").
ForgetStop = Literal["holdout", "off"]
# The tuned defaults per method and scenario (written by ``tune --write-defaults``, read by make_config).
DEFAULTS_FILE = Path(__file__).resolve().parent / "defaults.json"


# --------------------------------------------------------------------------- search spaces

@dataclass(frozen=True)
class FloatRange:
    """A float hyperparameter's search range for tuning (log-uniform by default, as for learning rates)."""

    low: float
    high: float
    log: bool = True


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int


@dataclass(frozen=True)
class Choice:
    values: tuple


SearchRange = Union[FloatRange, IntRange, Choice]


# --------------------------------------------------------------------------- configs

def literal_choices(cls: type) -> dict[str, tuple]:
    """The dataclass fields of ``cls`` annotated ``Literal[...]``, with their allowed values."""
    hints = get_type_hints(cls)
    return {f.name: get_args(hints[f.name]) for f in fields(cls) if get_origin(hints[f.name]) is Literal}


@dataclass
class MethodConfig:
    """Base for method configs; fields named ``*lr`` / ``*epochs`` / ``*batch_size`` get checked,
    and ``Literal`` fields must hold one of their values.

    ``epochs`` must be at least 1; other ``*_epochs`` fields (optional stages) may be 0.
    ``SEARCH_SPACE`` states the ranges tuning explores; every method gets the same trial budget over it.
    """

    SEARCH_SPACE: ClassVar[dict[str, SearchRange]] = {}
    # The largest compute, relative to Retrain's, that tuning admits for a point of the search space
    # (:func:`planned_cost`); None: no cap. Points over it are not run.
    COST_CAP: ClassVar[float | None] = None

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
            if f.name == "weight_decay" and value < 0:
                raise WssclError(f"weight_decay must be 0 or more, got {value}.")
        for name, allowed in literal_choices(type(self)).items():
            if getattr(self, name) not in allowed:
                raise WssclError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}.")


@dataclass
class RoundsConfig(MethodConfig):
    """A method that trains in rounds through the engine.

    ``augment_rounds``: whether its rounds augment their batches (random crop and flip). False trains on
    plain images, as the memorising original and Retrain do, so fine-tuning can keep D_r memorised; the
    contrastive loss's second view is augmented either way. Chosen per method and scenario on the tuning
    objective (docs/TUNING.md).

    ``schedule``: the learning rate over each of its phases: constant, or decayed to 0 (cosine, linear).

    ``lr_per_forget_sample``: the learning rates count per forget sample instead of per step (methods with
    forget rounds only). Their epochs are passes over D_f, so a forget set five times larger takes five times
    the steps at the same rate; with this option every phase that trains on D_f scales its rate by
    :data:`REFERENCE_FORGET_FRACTION` / (the forget set's share of the train split), so that epochs × rate ×
    |D_f|, the total push, is the same at every forget size. The values are those of a 10 % forget set.

    ``forget_pass_floor``: a phase that trains on D_f takes at least the forget steps per epoch of a pass over
    :data:`REFERENCE_FORGET_IMAGES` images (methods with forget rounds only). A pass over a 100-image class is
    one step, against eight over a 1,000-image one, yet moving the shared features off a class takes about the
    same steps whatever its size; with this option a phase whose forget pass is shorter repeats its epochs
    (all its rounds, so its retain rounds keep pace) by the ratio of the two step counts. A forget set of
    1,000 images or more runs as without it.
    """

    augment_rounds: bool = True
    schedule: Schedule = "constant"
    lr_per_forget_sample: bool = False
    forget_pass_floor: bool = False

    # Whether the method trains rounds on D_f (GA, RL, the contrastive stages, ...), so its learning rates
    # may count per forget sample and its forget passes have a floor; FT and ℓ1-sparse train on D_r alone.
    FORGET_ROUNDS: ClassVar[bool] = False

    @classmethod
    def unusable_options(cls) -> set[str]:
        """The round options this method cannot use: a learning rate per forget sample and a floor on the forget
        steps need rounds on D_f."""
        return set() if cls.FORGET_ROUNDS else {"lr_per_forget_sample", "forget_pass_floor"}

    def validate(self) -> None:
        super().validate()
        for name in self.unusable_options():
            if getattr(self, name) != BASE_ROUNDS[name]:
                raise WssclError(f"{name} needs rounds on the forget set, and this method trains on the retain set "
                                 "alone.")

    def forget_size_factor(self, split: ForgetSplit) -> float:
        """What the learning rate of a phase that trains on D_f is multiplied by on ``split``: 1 unless
        ``lr_per_forget_sample``."""
        if not self.lr_per_forget_sample or not split.num_forget:
            return 1.0
        return REFERENCE_FORGET_FRACTION * (split.num_forget + len(split.retain)) / split.num_forget

    def forget_pass_repeats(self, phase: Phase) -> int:
        """How many times ``phase`` repeats its epochs: 1 unless ``forget_pass_floor`` and its forget rounds take
        fewer steps per epoch than a pass over :data:`REFERENCE_FORGET_IMAGES` would (rounded to the nearest)."""
        forget_steps = sum(phase.round_steps(r) for r in phase.rounds if r.role == "forget")
        if not self.forget_pass_floor or not forget_steps:
            return 1
        reference = sum(math.ceil(REFERENCE_FORGET_IMAGES / (r.batch_size or phase.batch_size))
                        for r in phase.rounds if r.role == "forget")
        return max(1, round(reference / forget_steps))

    def round_phases(self, split: ForgetSplit, phases: list[Phase]) -> list[Phase]:
        """``phases`` as these round options run them: their schedule, the learning rate of phases on D_f,
        repeated epochs, and rounds without augmentation unless ``augment_rounds``."""
        factor = self.forget_size_factor(split)
        shaped = []
        for p in phases:
            on_forget = any(r.role == "forget" for r in p.rounds)
            rounds = [dataclasses.replace(r, augment=False) for r in p.rounds] if not self.augment_rounds else p.rounds
            shaped.append(dataclasses.replace(p, schedule=self.schedule, lr=p.lr * factor if on_forget else p.lr,
                                              epochs=p.epochs * self.forget_pass_repeats(p), rounds=rounds))
        return shaped


# The round options as a method without other choices trains: every field of RoundsConfig at its default.
BASE_ROUNDS: dict[str, Any] = {f.name: f.default for f in fields(RoundsConfig)}


def settable_fields(config: Any) -> list[dataclasses.Field]:
    """The fields a user may set on a config dataclass: all but the round options its method cannot use."""
    unusable = config.unusable_options() if isinstance(config, RoundsConfig) else set()
    return [f for f in fields(config) if f.name not in unusable]


@dataclass
class EpochConfig(RoundsConfig):
    """A method that trains in one SGD phase: ``epochs`` passes over its rounds at one learning rate."""

    epochs: int = 1
    lr: float = 0.01
    batch_size: int = 256
    weight_decay: float = WEIGHT_DECAY

    SEARCH_SPACE: ClassVar[dict[str, SearchRange]] = {"epochs": IntRange(1, 10), "lr": FloatRange(1e-3, 5e-2)}

    def phase(self, name: str, label: str, rounds: list[Round],
              mask: dict[str, torch.Tensor] | None = None, stop: StopRule | None = None) -> Phase:
        """The one place a config becomes an engine phase."""
        return Phase(name, label, rounds, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                     weight_decay=self.weight_decay, mask=mask, stop=stop)


# Forget samples trained between two checks of a forgetting phase's stop rule (inside an epoch).
STOP_CHECK_SAMPLES = 1024


@dataclass
class ForgettingConfig(EpochConfig):
    """A one-phase method that trains on D_f: its ``epochs`` are a cap when the stop rule is on."""

    # Off by default: on a memorising model these losses lower forget and held-out accuracy together, so the
    # rule fires only once the model has collapsed (docs/notes/forget-stop-rule.md); an option, not a default.
    forget_stop: ForgetStop = "off"

    FORGET_ROUNDS: ClassVar[bool] = True

    def stop_rule(self, ctx: "UnlearnContext", within_epoch: bool) -> StopRule | None:
        """The phase's stop rule: checked every ~``STOP_CHECK_SAMPLES`` forget samples when ``within_epoch``
        (a phase of forget rounds only), else at epoch ends, after the epoch's retain round has repaired.

        Random forgetting only: when D_f takes whole classes, Retrain's accuracy on it is 0, not that of
        held-out images. The held-out images are the validation ones, never the reported test set where a
        dataset has its own (:meth:`~wsscl_core.data.Dataset.holdout`)."""
        if self.forget_stop == "off" or ctx.split.scenario != "random":
            return None
        every = max(1, STOP_CHECK_SAMPLES // self.batch_size) if within_epoch else None
        return StopRule(ctx.split.forget, ctx.data.holdout("val"), every)


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
    # the round options of the method's config; None (a method without them, e.g. Retrain): phases as built
    rounds: RoundsConfig | None = None

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

    def train(self, model: Classifier, phases: list[Phase]) -> None:
        """Run phases through the one engine with this context's seed, progress and cancel."""
        if self.rounds is not None:
            phases = self.rounds.round_phases(self.split, phases)
        run_phases(model, self.data, phases, seed=self.seed, on_progress=self.on_progress, cancel=self.cancel,
                   batching=self.recipe.batching)


@dataclass
class MethodSpec:
    """A registered method. A *preset* (``preset_of``) runs another method's code with its tuned defaults
    and the fixed changes in ``preset``, e.g. the paper-literal WSS-CL next to the default one."""

    name: str
    label: str
    summary: str
    config_cls: type[MethodConfig]
    run: Callable[[UnlearnContext, Any], Classifier]
    preset_of: str | None = None
    preset: dict[str, Any] = field(default_factory=dict)
    # Images the method would process on a context with a config, known before it runs (needed by a cost cap).
    planned_images: Callable[[UnlearnContext, Any], int] | None = None


METHODS: dict[str, MethodSpec] = {}


def register(name: str, label: str, summary: str, config_cls: type[MethodConfig],
             planned_images: Callable[[UnlearnContext, Any], int] | None = None):
    """Decorator: ``@register("ft", "FT", "fine-tune on D_r", FTConfig)`` on ``run(ctx, cfg) -> model``."""

    if config_cls.COST_CAP is not None and planned_images is None:
        raise WssclError(f"{label} states a cost cap, so it must say how many images a run plans.")

    def wrap(fn: Callable[[UnlearnContext, Any], Classifier]):
        METHODS[name] = MethodSpec(name, label, summary, config_cls, fn, planned_images=planned_images)
        return fn

    return wrap


def register_preset(name: str, label: str, summary: str, of: str, values: dict[str, Any]) -> None:
    """Register ``name`` as method ``of`` with ``values`` fixed on top of its defaults."""
    base = METHODS[of]
    METHODS[name] = MethodSpec(name, label, summary, base.config_cls, base.run, of, dict(values), base.planned_images)


def method_names() -> list[str]:
    return list(METHODS)


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise WssclError(f"Unknown method {name!r}; choose one of {', '.join(METHODS)}.")
    return METHODS[name]


def _with_values(cfg: MethodConfig, values: dict[str, Any], label: str) -> MethodConfig:
    """``cfg`` with ``values`` applied; strings are converted to the field's type (CLI and text inputs)."""
    types = {f.name: type(getattr(cfg, f.name)) for f in fields(cfg)}
    for key, value in values.items():
        if key not in types:
            raise WssclError(f"{label} has no hyperparameter {key!r}; it has "
                             f"{', '.join(f.name for f in settable_fields(cfg))}.")
        kind = types[key]
        try:
            if kind is bool and isinstance(value, str):
                if value.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                    raise ValueError(value)
                value = value.lower() in ("1", "true", "yes", "on")
            elif kind is int and isinstance(value, str):
                value = int(value)
            elif kind is int and isinstance(value, float):
                if not value.is_integer():
                    raise ValueError(value)
                value = int(value)
            elif kind is not type(None):
                value = kind(value)
        except (TypeError, ValueError):
            kinds = {int: "a whole number", float: "a float", bool: "true or false"}
            raise WssclError(f"{key} must be {kinds.get(kind, 'a ' + kind.__name__)}, got {value!r}.") from None
        cfg = dataclasses.replace(cfg, **{key: value})
    return cfg


def tuned_defaults(name: str, scenario: Scenario) -> dict[str, Any]:
    """The values the defaults file holds for ``name`` in ``scenario`` (empty when none were tuned)."""
    return dict(TUNED_DEFAULTS.get(name, {}).get(scenario, {}))


def is_learning_rate(field_name: str) -> bool:
    return field_name == "lr" or field_name.endswith("_lr")


def scale_learning_rates(values: dict[str, Any], recipe_lr: float | None) -> dict[str, Any]:
    """``values`` with every learning rate moved from the defaults' units to an original trained at
    ``recipe_lr``: default learning rates are relative to the recipe of the originals they were tuned on
    (``TUNED_RECIPE_LR``), since how large a step moves a trained model depends on the step size it
    was trained with."""
    if recipe_lr is None:
        return dict(values)
    factor = recipe_lr / TUNED_RECIPE_LR
    return {k: v * factor if is_learning_rate(k) else v for k, v in values.items()}


def make_config(name: str, overrides: dict[str, Any] | None = None, scenario: Scenario = "random",
                recipe_lr: float | None = None) -> MethodConfig:
    """The method's config for ``scenario``: dataclass defaults, then the tuned defaults file, then a preset's
    fixed values, then ``overrides`` (strings are converted to the field's type).

    With ``recipe_lr`` (the learning rate the original was trained with) the default learning rates are
    scaled to it (:func:`scale_learning_rates`); ``overrides`` are taken as given.
    """
    spec = get_method(name)
    if scenario not in SCENARIOS:
        raise WssclError(f"Unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}.")
    if spec.preset_of is not None:
        cfg = _with_values(make_config(spec.preset_of, None, scenario, recipe_lr), spec.preset, spec.label)
    else:
        cfg = spec.config_cls()
        rates = {f.name: getattr(cfg, f.name) for f in fields(cfg) if is_learning_rate(f.name)}
        cfg = _with_values(cfg, scale_learning_rates({**rates, **tuned_defaults(name, scenario)}, recipe_lr), spec.label)
    cfg = _with_values(cfg, dict(overrides or {}), spec.label)
    cfg.validate()
    return cfg


def config_dict(cfg: MethodConfig) -> dict[str, Any]:
    """A config's fields as plain data (for JSON, tables and checkpoint metadata)."""
    return dataclasses.asdict(cfg)


def read_defaults_document(path: Path = DEFAULTS_FILE) -> dict[str, Any]:
    """The defaults file: ``recipe_lr`` (the learning rate of the originals its values were tuned on) and
    ``methods``, ``{method: {scenario: {field: value}}}``; the values are checked once the methods are
    registered (:func:`check_defaults`)."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WssclError(f"The defaults file {path} cannot be read: {exc}") from None
    recipe_lr = document.get("recipe_lr")
    if isinstance(recipe_lr, bool) or not isinstance(recipe_lr, (int, float)) or not 0 < recipe_lr <= MAX_LR:
        raise WssclError(f"The defaults file {path} must give recipe_lr, the learning rate of the originals "
                         f"its values were tuned on (a number above 0), got {recipe_lr!r}.")
    return document


def check_defaults(table: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Every method, scenario, field and value in the defaults table must make a valid config."""
    for name, by_scenario in table.items():
        spec = get_method(name)
        if spec.preset_of is not None:
            raise WssclError(f"{name} is a preset of {spec.preset_of}; tune and store {spec.preset_of} instead.")
        for scenario, values in by_scenario.items():
            if scenario not in SCENARIOS:
                raise WssclError(f"Defaults for {name}: unknown scenario {scenario!r}.")
            _with_values(spec.config_cls(), values, spec.label).validate()


def planned_cost(method: str, ctx: UnlearnContext, cfg: MethodConfig) -> float | None:
    """The images ``method`` plans to process with ``cfg`` over those Retrain's recipe processes on the same
    split: its compute relative to Retrain's, which on one machine is close to its RTE / Retrain. None when
    the method does not state its plan."""
    spec = get_method(method)
    if spec.planned_images is None:
        return None
    reference = get_method("retrain")
    return spec.planned_images(ctx, cfg) / reference.planned_images(ctx, make_config("retrain"))


@dataclass
class UnlearnOutcome:
    model: Classifier
    config: MethodConfig
    seconds: float


def run_unlearning(method: str, ctx: UnlearnContext, config: MethodConfig | dict | None = None) -> UnlearnOutcome:
    """Run ``method`` on a copy of ``ctx.original``; the returned time is the unlearning step alone (RTE)."""
    spec = get_method(method)
    cfg = config if isinstance(config, MethodConfig) else make_config(method, config, ctx.split.scenario)
    if isinstance(cfg, RoundsConfig):
        ctx = dataclasses.replace(ctx, rounds=cfg)
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

_DEFAULTS_DOCUMENT = read_defaults_document()
TUNED_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = _DEFAULTS_DOCUMENT.get("methods", {})
TUNED_RECIPE_LR: float = float(_DEFAULTS_DOCUMENT["recipe_lr"])
check_defaults(TUNED_DEFAULTS)
