"""FT: fine-tune on D_r with cross-entropy, relying on catastrophic forgetting of D_f."""

from dataclasses import dataclass

from ..engine import Round, cross_entropy_loss
from ..models import Classifier
from . import EpochConfig, UnlearnContext, register


@dataclass
class FTConfig(EpochConfig):
    epochs: int = 10
    lr: float = 0.01


@register("ft", "FT", "fine-tune on the retain set", FTConfig)
def fine_tune(ctx: UnlearnContext, cfg: FTConfig) -> Classifier:
    model = ctx.copy_original()
    ctx.train(model, [cfg.phase("ft", "Fine-tuning on D_r", [Round("retain", ctx.split.retain, cross_entropy_loss, "retain")])])
    return model
