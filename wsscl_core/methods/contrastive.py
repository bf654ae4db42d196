"""CL, WS-CL and WSS-CL: the paper's two-stage method and its ablations, one code path.

Stage 1 drives the output on D_f to the uniform distribution (KL to uniform). Stage 2
alternates, each epoch, a contrastive forget round (Eq. 7: a forget sample is pulled to its
own augmented view and pushed away from retain samples) with a short cross-entropy retain
round. The three methods differ only in the weight mask applied to every update of both
stages: none (CL), the hard saliency mask (WS-CL) or the soft one (WSS-CL). WSS-CL (5 % budget) is WSS-CL
with its own tuned values, chosen only among points whose planned compute is within 5 % of Retrain's.

Both stages work over the output classes the retain set contains (``target_classes="retain"``):
for random forgetting that is every class and the paper's loss exactly; when D_f takes a whole
class, "uniform" means uniform over the other classes, and the contrastive logits leave the
forgotten class's logit out — otherwise pushing Dress images away from retain samples raises the
Dress logit and brings the class back (docs/notes/class-forgetting-target-classes.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from ..engine import WEIGHT_DECAY, Phase, Round, cross_entropy_loss
from ..errors import WssclError
from ..models import Classifier
from ..saliency import DEFAULT_SOFT_NORMALISATION, SoftNormalisation, check_mask_ratio, forget_gradients, hard_mask, \
    soft_mask
from . import (Choice, FloatRange, IntRange, RoundsConfig, SearchRange, TargetClasses, UnlearnContext, register,
               register_preset)
from .losses import Representation, contrastive_round_loss, kl_to_uniform


@dataclass
class CLConfig(RoundsConfig):
    stage1_epochs: int = 1
    stage1_lr: float = 0.01
    stage2_epochs: int = 1
    stage2_lr: float = 0.01
    tau: float = 1.4
    representation: Representation = "logits"  # or penultimate "features", as the paper writes; a tuned choice
    # Output classes the forgetting works over: those D_r contains ("retain"; docs/notes/class-forgetting-target-classes.md)
    # or all K ("all", the paper's literal U). They differ only when D_f takes every sample of a class.
    target_classes: TargetClasses = "retain"
    # Retain batches per forget batch in each stage-2 epoch: the repair keeps pace with the forgetting
    # (8 + 8 batches on the default 10 % benchmark, 40 + 40 when half the data is forgotten).
    retain_ratio: float = 1.0
    # Retain samples drawn as negatives for each forget batch (Eq. 7's Σ_r); the paper uses a retain batch.
    num_negatives: int = 128
    batch_size: int = 128
    weight_decay: float = WEIGHT_DECAY
    # Which stages the weight mask (if any) scales: both, or only stage 2 as the paper writes it.
    mask_stages: Literal["both", "stage2"] = "both"

    FORGET_ROUNDS: ClassVar[bool] = True

    # Each stage may take up to 10 epochs, the range every one-phase method (FT, RL, SalUn, GA, ...) searches.
    SEARCH_SPACE: ClassVar[dict[str, SearchRange]] = {
        "stage1_epochs": IntRange(1, 10), "stage1_lr": FloatRange(1e-3, 1e-1),
        "stage2_epochs": IntRange(1, 10), "stage2_lr": FloatRange(1e-3, 5e-2),
        "retain_ratio": FloatRange(0.5, 8.0), "representation": Choice(("logits", "features")),
    }

    def validate(self) -> None:
        super().validate()
        if self.stage1_epochs + self.stage2_epochs < 1:
            raise WssclError("Both stages are switched off (0 epochs each); give at least one stage an epoch.")
        if self.tau <= 0:
            raise WssclError(f"The temperature tau must be positive, got {self.tau}.")
        if self.retain_ratio <= 0:
            raise WssclError(f"retain_ratio must be positive, got {self.retain_ratio}.")
        if self.num_negatives < 1:
            raise WssclError(f"num_negatives must be at least 1, got {self.num_negatives}.")


@dataclass
class WSCLConfig(CLConfig):
    mask_ratio: float = 0.5

    def validate(self) -> None:
        super().validate()
        check_mask_ratio(self.mask_ratio)


@dataclass
class WSSCLConfig(CLConfig):
    mask_normalisation: SoftNormalisation = DEFAULT_SOFT_NORMALISATION

    SEARCH_SPACE: ClassVar[dict[str, SearchRange]] = {
        **CLConfig.SEARCH_SPACE, "mask_normalisation": Choice(("global", "per-tensor", "density"))}


def two_stage_phases(ctx: UnlearnContext, cfg: CLConfig, mask: dict[str, torch.Tensor] | None) -> list[Phase]:
    """Stage 1 (KL to uniform on D_f), then stage 2 (contrastive forget + CE retain), both under ``mask``."""
    split = ctx.split
    common = dict(batch_size=cfg.batch_size, weight_decay=cfg.weight_decay)
    phases = []
    kept = ctx.target_classes(cfg.target_classes)
    if cfg.stage1_epochs:
        phases.append(Phase("stage1", "Stage 1: KL forgetting",
                            [Round("forget", split.forget, kl_to_uniform(kept), "forget")],
                            epochs=cfg.stage1_epochs, lr=cfg.stage1_lr,
                            mask=mask if cfg.mask_stages == "both" else None, **common))
    if cfg.stage2_epochs:
        retain_steps = max(1, round(cfg.retain_ratio * math.ceil(split.num_forget / cfg.batch_size)))
        phases.append(Phase("stage2", "Stage 2: adversarial fine-tuning", [
            Round("forget", split.forget, contrastive_round_loss(cfg.representation, cfg.tau, kept), "forget",
                  two_views=True, negatives=split.retain, num_negatives=cfg.num_negatives),
            Round("retain", split.retain, cross_entropy_loss, "retain", max_steps=retain_steps),
        ], epochs=cfg.stage2_epochs, lr=cfg.stage2_lr, mask=mask, **common))
    return phases


def two_stage_unlearning(ctx: UnlearnContext, cfg: CLConfig, mask: dict[str, torch.Tensor] | None) -> Classifier:
    model = ctx.copy_original()
    ctx.train(model, two_stage_phases(ctx, cfg, mask))
    return model


def two_stage_images(ctx: UnlearnContext, cfg: CLConfig, masked: bool) -> int:
    """Images the two stages plan to process, plus the one gradient pass over D_f a saliency mask takes."""
    phases = cfg.round_phases(ctx.split, two_stage_phases(ctx, cfg, None))
    return sum(p.planned_images() for p in phases) + (ctx.split.num_forget if masked else 0)


def masked_two_stage_images(ctx: UnlearnContext, cfg: CLConfig) -> int:
    return two_stage_images(ctx, cfg, masked=True)


def _forget_gradients(ctx: UnlearnContext) -> dict[str, torch.Tensor]:
    return forget_gradients(ctx.original, ctx.data, ctx.split.forget, cancel=ctx.cancel,
                            on_progress=ctx.on_progress)


@register("cl", "CL", "KL-to-uniform on D_f, then contrastive forgetting with retain fine-tuning (no mask)", CLConfig,
          planned_images=lambda ctx, cfg: two_stage_images(ctx, cfg, masked=False))
def contrastive_learning(ctx: UnlearnContext, cfg: CLConfig) -> Classifier:
    return two_stage_unlearning(ctx, cfg, None)


@register("wscl", "WS-CL", "CL restricted to the hard saliency mask", WSCLConfig,
          planned_images=masked_two_stage_images)
def weight_saliency_cl(ctx: UnlearnContext, cfg: WSCLConfig) -> Classifier:
    return two_stage_unlearning(ctx, cfg, hard_mask(_forget_gradients(ctx), cfg.mask_ratio))


@register("wsscl", "WSS-CL", "CL with every update scaled by the soft saliency mask (the paper's method)", WSSCLConfig,
          planned_images=masked_two_stage_images)
def weight_soft_saliency_cl(ctx: UnlearnContext, cfg: WSSCLConfig) -> Classifier:
    return two_stage_unlearning(ctx, cfg, soft_mask(_forget_gradients(ctx), cfg.mask_normalisation))


# The paper's WSS-CL taken literally, next to the default: Eq. 4's mask without normalisation, uniform over
# all K classes, the mask in stage 2 only, and the contrastive loss on penultimate features. Every other
# value is WSS-CL's tuned default, so a table row names exactly which variant a claim is about.
PAPER_LITERAL = {"mask_normalisation": "literal", "target_classes": "all", "mask_stages": "stage2",
                 "representation": "features"}
register_preset("wsscl_paper", "WSS-CL (paper-literal)",
                "WSS-CL exactly as the paper writes it: literal Eq. 4 mask, stage 2 only, all K classes, features",
                "wsscl", PAPER_LITERAL)


@dataclass
class BudgetWSSCLConfig(WSSCLConfig):
    """WSS-CL held to 5 % of Retrain's time (the target the paper's efficiency sets): tuning runs only points
    whose planned compute on its first forget set is within ``COST_CAP`` of Retrain's. The cap is 4.5 %, as
    the count leaves out the mask's and the contrastive loss's own work (measured times ran up to 8 % above the
    plan). Its own study and defaults, the same search space and trial budget as WSS-CL; the dataclass values
    (1 + 1 epochs) are within the cap."""

    COST_CAP: ClassVar[float] = 0.045


@register("wsscl_budget", "WSS-CL (5 % budget)", "WSS-CL tuned within 5 % of Retrain's compute", BudgetWSSCLConfig,
          planned_images=masked_two_stage_images)
def budget_wsscl(ctx: UnlearnContext, cfg: BudgetWSSCLConfig) -> Classifier:
    return weight_soft_saliency_cl(ctx, cfg)
