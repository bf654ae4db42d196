"""BS (boundary shrink): move each forget sample to its nearest wrong class, found by FGSM on θo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import Batch, LossFn, Round, StepOutput
from ..models import Classifier
from . import ForgettingConfig, FloatRange, IntRange, SearchRange, UnlearnContext, register


@dataclass
class BSConfig(ForgettingConfig):
    epochs: int = 3
    lr: float = 1e-5
    fgsm_step: float = 0.1  # in [0, 1] pixel space
    batch_size: int = 128

    SEARCH_SPACE: ClassVar[dict[str, SearchRange]] = {"epochs": IntRange(1, 10), "lr": FloatRange(1e-6, 1e-2)}


def nearest_wrong_class(frozen: nn.Module, x: torch.Tensor, y: torch.Tensor, step: float) -> torch.Tensor:
    """One FGSM step on the frozen model; the adversarial image's top class other than ``y``.

    The true class is excluded so the target is always a wrong class, even where the attack fails.
    """
    x = x.detach().requires_grad_(True)
    grad, = torch.autograd.grad(F.cross_entropy(frozen(x), y), x)
    with torch.no_grad():
        logits = frozen((x + step * grad.sign()).clamp(0, 1))
        return logits.scatter(1, y[:, None], float("-inf")).argmax(1)


def boundary_shrink_loss(frozen: nn.Module, step: float) -> LossFn:
    def loss(model: nn.Module, batch: Batch) -> StepOutput:
        target = nearest_wrong_class(frozen, batch.x, batch.y, step)
        logits = model(batch.x)
        ce = F.cross_entropy(logits, target)
        return StepOutput(ce, {"ce_neighbour": ce.detach()}, logits)

    return loss


@register("bs", "BS", "boundary shrink: push forget samples to their nearest wrong class (FGSM on θo)", BSConfig)
def boundary_shrink(ctx: UnlearnContext, cfg: BSConfig) -> Classifier:
    frozen = ctx.copy_original().eval().requires_grad_(False)
    model = ctx.copy_original()
    ctx.train(model, [cfg.phase("bs", "Boundary shrink on D_f",
                            [Round("forget", ctx.split.forget, boundary_shrink_loss(frozen, cfg.fgsm_step), "forget")],
                            stop=cfg.stop_rule(ctx, within_epoch=True))])
    return model
