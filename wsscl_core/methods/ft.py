"""FT: fine-tune on D_r with cross-entropy, relying on catastrophic forgetting of D_f."""

from dataclasses import dataclass

from ..engine import Phase, Round, cross_entropy_loss
from ..models import Classifier
from . import MethodConfig, UnlearnContext, register


@dataclass
class FTConfig(MethodConfig):
    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 256
    weight_decay: float = 5e-4


@register("ft", "FT", "fine-tune on the retain set", FTConfig)
def fine_tune(ctx: UnlearnContext, cfg: FTConfig) -> Classifier:
    model = ctx.copy_original()
    ctx.train(model, [Phase("ft", "Fine-tuning on D_r", [Round("retain", ctx.split.retain, cross_entropy_loss, "retain")],
                            epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, weight_decay=cfg.weight_decay)])
    return model
