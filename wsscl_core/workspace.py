"""A dataset plus its original model, ready for unlearning: what the CLI and the studio start from."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Mapping

import torch

from .checkpoints import DEFAULT_MODEL_FILE, checkpoint_budget_for, model_from_state, model_metadata, read_checkpoint
from .data import DEFAULT_DATASET, Dataset, ForgetSpec, ForgetSplit, Holdout, Scenario, load_dataset
from .engine import CancelFlag, ProgressFn, TrainRecipe, run_phases
from .errors import WssclError
from .methods import MethodConfig, UnlearnContext, make_config
from .metrics import accuracy, predict_logits
from .models import Classifier, build_model, pick_device


@dataclass
class Workspace:
    """The original model θo with the exact dataset it was trained on, both on ``device``."""

    data: Dataset
    original: Classifier
    metadata: dict
    model_name: str
    recipe: TrainRecipe
    device: torch.device

    def context(self, split: ForgetSplit, seed: int = 0, on_progress: ProgressFn | None = None,
                cancel: CancelFlag | None = None) -> UnlearnContext:
        return UnlearnContext(self.original, self.data, split, self.model_name, self.recipe, seed, on_progress, cancel)

    def method_config(self, method: str, overrides: Mapping[str, Any] | None = None,
                      scenario: Scenario = "random") -> MethodConfig:
        """``method``'s config for this original: default learning rates scaled to the rate it was trained with."""
        return make_config(method, dict(overrides or {}), scenario, recipe_lr=self.recipe.lr)


def check_same_data(metadata: dict, data: Dataset) -> None:
    """Refuse a checkpoint whose recorded train-set fingerprint differs from ``data``'s.

    Unlearning presumes θo was trained on exactly retain ∪ forget; a silent mismatch makes
    every metric meaningless.
    """
    recorded = (metadata.get("dataset") or {}).get("fingerprint")
    if recorded and recorded != data.fingerprint():
        raise WssclError(f"This checkpoint was trained on a different train set ({metadata['dataset'].get('name')}, "
                         f"fingerprint {recorded}) than {data.name} (fingerprint {data.fingerprint()}). "
                         "Unlearning needs the exact data the model was trained on.")


def open_workspace(checkpoint: str | Path | bytes | BinaryIO | None = None, dataset: str | Dataset | None = None,
                   model_name: str | None = None, device: str | torch.device = "auto",
                   data_root: str | None = None) -> Workspace:
    """Load (by default) the shipped original model and the shipped dataset."""
    device = pick_device(device) if isinstance(device, str) else device
    source = DEFAULT_MODEL_FILE if checkpoint is None else checkpoint
    if isinstance(dataset, Dataset) or dataset is not None:
        # the dataset first: its largest model bounds the checkpoint's size before anything is inflated
        data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, root=data_root)
        state, saved_meta = read_checkpoint(source, max_bytes=checkpoint_budget_for(data))
    else:
        state, saved_meta = read_checkpoint(source)
        data = load_dataset((saved_meta.get("dataset") or {}).get("name") or DEFAULT_DATASET, root=data_root)
    model, meta = model_from_state(state, saved_meta, dataset=data, model_name=model_name, device=device)
    check_same_data(meta, data)
    recipe = TrainRecipe.from_dict(meta.get("recipe"))
    return Workspace(data.to(device), model.eval(), meta, meta["model"], recipe, device)


# Version of the run keys in checkpoint metadata (method, seed, forget, config, metrics, seconds, holdout).
RUN_SCHEMA = 2


def checkpoint_metadata(model_name: str, data: Dataset, recipe: TrainRecipe, *, method: str, seed: int,
                        metrics: Mapping[str, float], seconds: float, forget: ForgetSpec | None = None,
                        config: Mapping[str, Any] | None = None, holdout: Holdout = "test",
                        original_metrics: Mapping[str, float] | None = None,
                        device: str | None = None) -> dict[str, Any]:
    """The one metadata writer: the model's identity (architecture, dataset, recipe) and the run that made it.

    ``method`` is "original" for a trained original model (``seconds`` its training time), or the
    unlearning method (``seconds`` its RTE, ``forget`` and ``config`` what it did, ``original_metrics``
    the scores of the original it started from). Keys without a value are left out.
    """
    run = {"run_schema": RUN_SCHEMA, "method": method, "seed": seed, "metrics": dict(metrics),
           "seconds": round(seconds, 3), "holdout": holdout, "config": dict(config or {}),
           "forget": None if forget is None else forget.describe(),
           "original": None if original_metrics is None else dict(original_metrics), "device": device}
    return model_metadata(model_name, data, recipe=recipe.to_dict(), **{k: v for k, v in run.items() if v is not None})


def train_original(data: Dataset, model_name: str = "compact", recipe: TrainRecipe | None = None, seed: int = 0,
                   device: str | torch.device = "auto", on_progress: ProgressFn | None = None,
                   cancel: CancelFlag | None = None) -> tuple[Classifier, dict]:
    """Train θo on the whole train split; returns the model and checkpoint metadata (recipe, RA and TA)."""
    device = pick_device(device) if isinstance(device, str) else device
    recipe = (recipe or TrainRecipe()).validate()
    if seed < 0:
        raise WssclError(f"The seed must be 0 or more, got {seed}.")
    torch.manual_seed(seed)
    model = build_model(model_name, data.channels, data.num_classes, data.mean, data.std).to(device)
    on_device = data.to(device)
    start = time.perf_counter()
    run_phases(model, on_device, [recipe.phase(torch.arange(len(data.train)), label="Training the original model")],
               seed=seed, on_progress=on_progress, cancel=cancel, batching=recipe.batching)
    seconds = time.perf_counter() - start
    metrics = {"RA": accuracy(predict_logits(model, on_device.train.images), on_device.train.labels),
               "TA": accuracy(predict_logits(model, on_device.test.images), on_device.test.labels)}
    meta = checkpoint_metadata(model_name, data, recipe, method="original", seed=seed, metrics=metrics,
                               seconds=seconds, device=str(device))
    return model.eval(), meta
