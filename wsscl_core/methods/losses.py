"""Losses shared by several methods, each a ``(model, batch) -> StepOutput`` for an engine Round."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import Batch, LossFn, StepOutput

Representation = Literal["features", "logits"]


def negated_cross_entropy(model: nn.Module, batch: Batch) -> StepOutput:
    """Gradient ascent: minimise −CE on the true labels."""
    logits = model(batch.x)
    ce = F.cross_entropy(logits, batch.y)
    return StepOutput(-ce, {"ce": ce.detach()}, logits)


def random_label_cross_entropy(classes: torch.Tensor | None = None) -> LossFn:
    """CE towards labels drawn uniformly from ``classes`` (all K when None), fresh each step from the run's generator.

    With a whole class forgotten, ``classes`` are the retained ones: a label drawn from all K would
    name the forgotten class for 1 in K samples and train it back in.
    """

    def loss(model: nn.Module, batch: Batch) -> StepOutput:
        logits = model(batch.x)
        pool = logits.shape[1] if classes is None else len(classes)
        draw = torch.randint(0, pool, batch.y.shape, device=logits.device, generator=batch.generator)
        labels = draw if classes is None else classes.to(logits.device)[draw]
        value = F.cross_entropy(logits, labels)
        return StepOutput(value, {"ce_random": value.detach()}, logits)

    return loss


def kl_to_uniform(classes: torch.Tensor | None = None) -> LossFn:
    """WSS-CL stage 1: KL(p ‖ U), zero exactly when the output is uniform over ``classes`` (all when None).

    With all K classes this is the paper's Σ p log p + log K. With a subset S (the classes the
    retain set still contains) it is KL(q ‖ U_S) − log p(S), q being p renormalised on S: the same
    flattening within S, plus a push of the probability mass off classes no retained sample has —
    the only uniform output a model trained on D_r alone could give.
    """

    def loss(model: nn.Module, batch: Batch) -> StepOutput:
        logits = model(batch.x)
        log_p = F.log_softmax(logits.float(), dim=1)
        if classes is None:
            kl = (log_p.exp() * log_p).sum(1).mean() + math.log(logits.shape[1])
        else:
            log_p_s = log_p[:, classes.to(logits.device)]
            log_mass = torch.logsumexp(log_p_s, dim=1, keepdim=True)
            log_q = log_p_s - log_mass
            kl = ((log_q.exp() * log_q).sum(1) + math.log(len(classes)) - log_mass.squeeze(1)).mean()
        return StepOutput(kl, {"kl_uniform": kl.detach()}, logits)

    return loss


def contrastive_forget_loss(z: torch.Tensor, z_view: torch.Tensor, z_neg: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 7: −log( e^{sim(z,z')/τ} / (e^{sim(z,z')/τ} + Σ_r e^{sim(z,z_r)/τ}) ), averaged over the batch.

    ``z`` and ``z_view`` are (B, D) representations of forget samples and their augmented views,
    ``z_neg`` is (R, D) of retain samples; sim is cosine similarity. Every forget sample is
    contrasted with all R negatives.
    """
    z, z_view, z_neg = (F.normalize(t.float(), dim=1) for t in (z, z_view, z_neg))
    positive = (z * z_view).sum(1, keepdim=True) / tau
    negatives = z @ z_neg.T / tau
    return (torch.logsumexp(torch.cat([positive, negatives], 1), 1) - positive.squeeze(1)).mean()


def contrastive_round_loss(representation: Representation, tau: float, classes: torch.Tensor | None = None) -> LossFn:
    """Eq. 7 on a two-view forget batch with retain negatives.

    The forget batch, its views and the negatives go through the model in three forward passes, as in
    the reference implementations, so train-mode BatchNorm normalises each set by its own statistics.
    Three 128-image passes are also faster on a CPU than one 384-image pass (docs/notes/contrastive-round-passes.md).
    With logits as the representation, ``classes`` (when given) keeps only those logits: pushing a
    forget sample away from retain samples in the full logit space raises exactly the logit of a
    class no retain sample has, i.e. re-learns a forgotten class.
    """

    def loss(model: nn.Module, batch: Batch) -> StepOutput:
        if batch.x_view is None or batch.x_neg is None:
            raise ValueError("The contrastive round needs two views and retain negatives.")
        passes = [model.forward_with_features(x) for x in (batch.x, batch.x_view, batch.x_neg)]
        z, z_view, z_neg = (feats if representation == "features" else
                            logits if classes is None else logits[:, classes.to(logits.device)]
                            for logits, feats in passes)
        value = contrastive_forget_loss(z, z_view, z_neg, tau)
        return StepOutput(value, {"contrastive": value.detach()}, passes[0][0])

    return loss
