"""GA: gradient ascent on the forget set (minimise −CE on D_f); D_r is never used."""

from __future__ import annotations

from dataclasses import dataclass

from ..engine import Phase, Round
from ..models import Classifier
from . import MethodConfig, UnlearnContext, register
from .losses import negated_cross_entropy


@dataclass
class GAConfig(MethodConfig):
    epochs: int = 5
    lr: float = 1e-4
    batch_size: int = 256
    weight_decay: float = 5e-4


@register("ga", "GA", "gradient ascent on the forget set", GAConfig)
def gradient_ascent(ctx: UnlearnContext, cfg: GAConfig) -> Classifier:
    model = ctx.copy_original()
    ctx.train(model, [Phase("ga", "Gradient ascent on D_f",
                            [Round("forget", ctx.split.forget, negated_cross_entropy, "forget")],
                            epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, weight_decay=cfg.weight_decay)])
    return model
