"""GA: gradient ascent on the forget set (minimise −CE on D_f); D_r is never used."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..engine import Round
from ..models import Classifier
from . import ForgettingConfig, FloatRange, IntRange, SearchRange, UnlearnContext, register
from .losses import negated_cross_entropy


@dataclass
class GAConfig(ForgettingConfig):
    epochs: int = 5
    lr: float = 1e-4

    SEARCH_SPACE: ClassVar[dict[str, SearchRange]] = {"epochs": IntRange(1, 10), "lr": FloatRange(1e-5, 1e-2)}


@register("ga", "GA", "gradient ascent on the forget set", GAConfig)
def gradient_ascent(ctx: UnlearnContext, cfg: GAConfig) -> Classifier:
    model = ctx.copy_original()
    ctx.train(model, [cfg.phase("ga", "Gradient ascent on D_f",
                                [Round("forget", ctx.split.forget, negated_cross_entropy, "forget")],
                                stop=cfg.stop_rule(ctx, within_epoch=True))])
    return model
