"""BE (boundary expanding): send D_f to an extra "shadow" class, then delete that class's neuron."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import Batch, Round, StepOutput
from ..models import Classifier
from . import ForgettingConfig, FloatRange, IntRange, SearchRange, UnlearnContext, register


@dataclass
class BEConfig(ForgettingConfig):
    epochs: int = 3
    lr: float = 1e-5
    batch_size: int = 128

    SEARCH_SPACE: ClassVar[dict[str, SearchRange]] = {"epochs": IntRange(1, 10), "lr": FloatRange(1e-6, 1e-2)}


def shadow_class_loss(model: nn.Module, batch: Batch) -> StepOutput:
    """CE towards the last (extra) output: class index K of a K+1-way head."""
    logits = model(batch.x)
    target = torch.full_like(batch.y, logits.shape[1] - 1)
    ce = F.cross_entropy(logits, target)
    return StepOutput(ce, {"ce_shadow": ce.detach()}, logits)


def _resized_head(head: nn.Linear, num_outputs: int) -> nn.Linear:
    """A head with ``num_outputs`` rows: the old rows copied, any new row freshly initialised."""
    new = nn.Linear(head.in_features, num_outputs, bias=head.bias is not None).to(head.weight.device)
    rows = min(num_outputs, head.out_features)
    with torch.no_grad():
        new.weight[:rows] = head.weight[:rows]
        if head.bias is not None:
            new.bias[:rows] = head.bias[:rows]
    return new


@register("be", "BE", "boundary expanding: train the forget set into an extra class, then remove it", BEConfig)
def boundary_expanding(ctx: UnlearnContext, cfg: BEConfig) -> Classifier:
    model = ctx.copy_original()
    num_classes = model.output_layer().out_features
    model.replace_head(_resized_head(model.output_layer(), num_classes + 1))
    ctx.train(model, [cfg.phase("be", "Boundary expanding on D_f (extra class)",
                            [Round("forget", ctx.split.forget, shadow_class_loss, "forget")],
                            stop=cfg.stop_rule(ctx, within_epoch=True))])
    model.replace_head(_resized_head(model.output_layer(), num_classes))
    return model
