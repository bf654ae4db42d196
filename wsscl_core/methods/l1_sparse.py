"""ℓ1-sparse: fine-tune on D_r with an ℓ1 penalty α_t‖θ‖₁ whose weight decays linearly to 0."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from ..engine import Batch, LossFn, Round, StepOutput, cross_entropy_loss
from ..errors import WssclError
from ..models import Classifier
from . import EpochConfig, FloatRange, SearchRange, UnlearnContext, register


@dataclass
class L1SparseConfig(EpochConfig):
    epochs: int = 3
    lr: float = 0.01
    alpha: float = 5e-4

    SEARCH_SPACE: ClassVar[dict[str, SearchRange]] = {**EpochConfig.SEARCH_SPACE, "alpha": FloatRange(1e-5, 1e-2)}

    def validate(self) -> None:
        super().validate()
        if self.alpha < 0:
            raise WssclError(f"The l1 weight alpha must be 0 or more, got {self.alpha}.")


def l1_penalised_cross_entropy(alpha: float) -> LossFn:
    """CE + α(1 − progress)‖θ‖₁: strong sparsity early (to drop D_f-specific weights), none at the end."""

    def loss(model: nn.Module, batch: Batch) -> StepOutput:
        out = cross_entropy_loss(model, batch)
        l1 = sum(p.abs().sum() for p in model.parameters())
        penalty = alpha * (1.0 - batch.progress) * l1
        return StepOutput(out.loss + penalty, {**out.terms, "l1": l1.detach()}, out.logits)

    return loss


@register("l1_sparse", "ℓ1-sparse", "fine-tune on the retain set with a decaying ℓ1 penalty on the weights",
          L1SparseConfig)
def l1_sparse(ctx: UnlearnContext, cfg: L1SparseConfig) -> Classifier:
    model = ctx.copy_original()
    ctx.train(model, [cfg.phase("l1_sparse", "ℓ1-sparse fine-tuning on D_r",
                            [Round("retain", ctx.split.retain, l1_penalised_cross_entropy(cfg.alpha), "retain")])])
    return model
