"""RL: relabel D_f with uniformly random classes and fine-tune, alternating with a pass over D_r."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engine import Round, cross_entropy_loss
from ..models import Classifier
from . import ForgettingConfig, TargetClasses, UnlearnContext, register
from .losses import random_label_cross_entropy


@dataclass
class RLConfig(ForgettingConfig):
    epochs: int = 3
    lr: float = 0.01
    # Random labels come from the classes D_r still contains ("retain") or from all K ("all", the
    # reference code's draw); they differ only when D_f takes a whole class (docs/notes/class-forgetting-target-classes.md).
    target_classes: TargetClasses = "retain"


def random_label_training(ctx: UnlearnContext, cfg: RLConfig, mask: dict[str, torch.Tensor] | None,
                          label: str) -> Classifier:
    """Each epoch: one pass over D_f with random labels, then one pass over D_r (shared by RL and SalUn)."""
    model = ctx.copy_original()
    ctx.train(model, [cfg.phase("random_labels", label, [
        Round("forget", ctx.split.forget, random_label_cross_entropy(ctx.target_classes(cfg.target_classes)), "forget"),
        Round("retain", ctx.split.retain, cross_entropy_loss, "retain"),
    ], mask, cfg.stop_rule(ctx, within_epoch=False))])
    return model


@register("rl", "RL", "random labels on the forget set, alternating with fine-tuning on the retain set", RLConfig)
def random_labels(ctx: UnlearnContext, cfg: RLConfig) -> Classifier:
    return random_label_training(ctx, cfg, None, "Random labels on D_f, then D_r")
