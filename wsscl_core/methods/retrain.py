"""Retrain: the gold standard. A fresh model trained on D_r alone with the original recipe."""

from dataclasses import dataclass

import torch

from ..engine import Phase
from ..models import Classifier, build_model
from . import MethodConfig, UnlearnContext, register


@dataclass
class RetrainConfig(MethodConfig):
    """Retrain repeats the original model's recipe (from its checkpoint); nothing to tune."""


def retrain_phase(ctx: UnlearnContext) -> Phase:
    return ctx.recipe.phase(ctx.split.retain, label="Retrain on D_r", name="retrain")


def initial_model(ctx: UnlearnContext) -> Classifier:
    """The freshly initialised model Retrain trains, seeded by the run's seed."""
    torch.manual_seed(ctx.seed)
    d = ctx.data
    return build_model(ctx.model_name, d.channels, d.num_classes, d.mean, d.std).to(ctx.device)


@register("retrain", "Retrain", "train from scratch on the retain set (gold standard)", RetrainConfig,
          planned_images=lambda ctx, cfg: retrain_phase(ctx).planned_images())
def retrain(ctx: UnlearnContext, cfg: RetrainConfig) -> Classifier:
    model = initial_model(ctx)
    ctx.train(model, [retrain_phase(ctx)])
    return model
