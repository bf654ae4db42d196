"""SalUn: random-label unlearning that only updates the weights most salient to the forget set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..models import Classifier
from ..saliency import check_mask_ratio, forget_gradients, hard_mask
from . import FloatRange, SearchRange, UnlearnContext, register
from .rl import RLConfig, random_label_training


@dataclass
class SalUnConfig(RLConfig):
    lr: float = 0.013
    mask_ratio: float = 0.5

    SEARCH_SPACE: ClassVar[dict[str, SearchRange]] = {**RLConfig.SEARCH_SPACE,
                                                      "mask_ratio": FloatRange(0.1, 0.9, log=False)}

    def validate(self) -> None:
        super().validate()
        check_mask_ratio(self.mask_ratio)


@register("salun", "SalUn", "random labels restricted to the hard saliency mask (top-r forget gradients)", SalUnConfig)
def saliency_unlearning(ctx: UnlearnContext, cfg: SalUnConfig) -> Classifier:
    mask = hard_mask(forget_gradients(ctx.original, ctx.data, ctx.split.forget, cancel=ctx.cancel,
                                     on_progress=ctx.on_progress), cfg.mask_ratio)
    return random_label_training(ctx, cfg, mask, "Masked random labels on D_f, then D_r")
