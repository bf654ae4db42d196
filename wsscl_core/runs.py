"""The one path from a request to a scored result: the CLI, ``bench``, ``tune`` and the studio's jobs all call it.

A :class:`RunRequest` (method, forget set, overrides, seed, which held-out images to score on) is
checked by :func:`prepare` before any work, run by :func:`execute` on a workspace, and scored with
one evaluation policy (:func:`score`); :func:`result_metadata` describes an unlearned model through
the one checkpoint-metadata writer, :func:`wsscl_core.workspace.checkpoint_metadata`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from .data import HOLDOUTS, ForgetSpec, ForgetSplit, Holdout, make_forget_split
from .engine import CancelFlag, ProgressFn, check_cancel
from .errors import WssclError
from .methods import MethodConfig, config_dict, get_method, make_config, planned_cost, run_unlearning
from .metrics import Evaluation, avg_gap, evaluate
from .models import Classifier
from .workspace import Workspace, checkpoint_metadata

# One evaluation policy for every caller: RA and the MIA's member set use at most this many retain
# samples (a fixed random subset per seed; SalUn's MIA caps its shadow set at the same number).
RETAIN_EVAL = 10_000
ORIGINAL = "original"  # the untouched original model, as a row of every table
ORIGINAL_LABEL = "Original (no unlearning)"


@dataclass(frozen=True)
class RunRequest:
    """What to run: ``method`` on the forget set ``forget`` with ``overrides``, at ``seed``.

    ``holdout`` "val" scores on validation images instead of the reported test set (tuning only).
    """

    method: str
    forget: ForgetSpec
    overrides: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    holdout: Holdout = "test"

    @classmethod
    def parse(cls, method: str, forget: str, overrides: Mapping[str, Any] | None = None, seed: int = 0,
              holdout: Holdout = "test") -> "RunRequest":
        """A request from command-line text (``class:3``, ``random:0.1``); the split seed is ``seed``."""
        if seed < 0:
            raise WssclError(f"The seed must be 0 or more, got {seed}.")
        return cls(method, ForgetSpec.parse(forget, seed), dict(overrides or {}), seed, holdout)


@dataclass
class PreparedRun:
    """A validated request: the split, the method's config and notes on values that were adjusted."""

    request: RunRequest
    split: ForgetSplit
    config: MethodConfig
    notes: list[str]

    @property
    def label(self) -> str:
        return get_method(self.request.method).label


@dataclass
class RunResult:
    """A scored run: the model (on the device it ran on), its config, metrics and unlearning time (RTE)."""

    request: RunRequest
    split: ForgetSplit
    method: str
    label: str
    model: Classifier | None
    config: dict[str, Any]
    evaluation: Evaluation
    rte_s: float
    eval_s: float

    def scores(self) -> dict[str, float]:
        return self.evaluation.scores()

    def gap_to(self, reference: "RunResult | None") -> float | None:
        """Avg.Gap to ``reference`` (Retrain on the same split), or None without one."""
        return None if reference is None else avg_gap(self.scores(), reference.scores())

    def summary(self) -> dict[str, Any]:
        """JSON-ready record of the run (no model, no per-sample arrays)."""
        return {"method": self.method, "label": self.label, "forget": self.split.spec.describe(),
                "seed": self.request.seed, "holdout": self.request.holdout, "config": self.config,
                "rte_s": round(self.rte_s, 3), "metrics": self.evaluation.to_dict()}


def check(request: RunRequest) -> MethodConfig:
    """Everything about a request that can be checked without data (method, overrides, held-out set name):
    callers run it before loading a dataset or a model, so a typo costs no compute."""
    if request.holdout not in HOLDOUTS:
        raise WssclError(f"Unknown held-out set {request.holdout!r}; choose one of {', '.join(HOLDOUTS)}.")
    return make_config(request.method, dict(request.overrides), request.forget.kind)


def prepare(ws: Workspace, request: RunRequest) -> PreparedRun:
    """Check a request before any work starts; raises :class:`WssclError` with a message for the user."""
    check(request)
    ws.data.holdout(request.holdout)
    split = make_forget_split(ws.data.train.labels, request.forget, ws.data.num_classes)
    config = ws.method_config(request.method, request.overrides, split.scenario)
    notes = []
    smallest = min(split.num_forget, split.num_retain)
    for name, value in vars(config).items():
        if name.endswith("batch_size") and not isinstance(value, bool) and value > smallest:
            notes.append(f"{name} = {value} is larger than the smaller of the forget ({split.num_forget}) and "
                         f"retain ({split.num_retain}) sets; such a set is used as one batch of all its samples.")
    return PreparedRun(request, split, config, notes)


def prepared_cost(ws: Workspace, prepared: PreparedRun) -> float | None:
    """A prepared run's planned compute relative to Retrain's on the same split (None: the method states no
    plan), known before anything runs."""
    return planned_cost(prepared.request.method, ws.context(prepared.split, prepared.request.seed), prepared.config)


def score(ws: Workspace, model: Classifier, split: ForgetSplit, seed: int, holdout: Holdout = "test") -> Evaluation:
    """The one evaluation policy: all forget samples, at most ``RETAIN_EVAL`` retain samples, the held-out set."""
    return evaluate(model, ws.data, split, seed=seed, max_retain_eval=RETAIN_EVAL, holdout=holdout)


def execute(ws: Workspace, prepared: PreparedRun, on_progress: ProgressFn | None = None,
            cancel: CancelFlag | None = None) -> RunResult:
    """Run a prepared request on a copy of the workspace's original and score the result."""
    request = prepared.request
    outcome = run_unlearning(request.method, ws.context(prepared.split, request.seed, on_progress, cancel),
                             prepared.config)
    check_cancel(cancel)
    began = time.perf_counter()
    evaluation = score(ws, outcome.model, prepared.split, request.seed, request.holdout)
    return RunResult(request, prepared.split, request.method, prepared.label, outcome.model,
                     config_dict(outcome.config), evaluation, outcome.seconds, time.perf_counter() - began)


def run(ws: Workspace, request: RunRequest, on_progress: ProgressFn | None = None,
        cancel: CancelFlag | None = None) -> RunResult:
    """Prepare, execute and score ``request`` on ``ws``."""
    return execute(ws, prepare(ws, request), on_progress, cancel)


def original_result(ws: Workspace, split: ForgetSplit, request: RunRequest) -> RunResult:
    """The untouched original scored like a run (RTE 0): the row every method must beat."""
    began = time.perf_counter()
    evaluation = score(ws, ws.original, split, request.seed, request.holdout)
    return RunResult(request, split, ORIGINAL, ORIGINAL_LABEL, ws.original, {}, evaluation, 0.0,
                     time.perf_counter() - began)


def result_metadata(ws: Workspace, result: RunResult) -> dict[str, Any]:
    """Checkpoint metadata of an unlearning run's model."""
    return checkpoint_metadata(ws.model_name, ws.data, ws.recipe, method=result.method, seed=result.request.seed,
                               metrics=result.scores(), seconds=result.rte_s, forget=result.split.spec,
                               config=result.config, holdout=result.request.holdout,
                               original_metrics=ws.metadata.get("metrics"))
