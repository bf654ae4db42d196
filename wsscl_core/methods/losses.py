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


def random_label_cross_entropy(model: nn.Module, batch: Batch) -> StepOutput:
    """CE towards labels drawn uniformly from all K classes (fresh each step, from the run's generator)."""
    logits = model(batch.x)
    random_labels = torch.randint(0, logits.shape[1], batch.y.shape, device=logits.device, generator=batch.generator)
    loss = F.cross_entropy(logits, random_labels)
    return StepOutput(loss, {"ce_random": loss.detach()}, logits)


def kl_to_uniform(model: nn.Module, batch: Batch) -> StepOutput:
    """KL(p ‖ U) = Σ p log p + log K: zero exactly when the output is uniform (WSS-CL stage 1)."""
    logits = model(batch.x)
    log_p = F.log_softmax(logits.float(), dim=1)
    kl = (log_p.exp() * log_p).sum(1).mean() + math.log(logits.shape[1])
    return StepOutput(kl, {"kl_uniform": kl.detach()}, logits)


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


def contrastive_round_loss(representation: Representation, tau: float) -> LossFn:
    """Eq. 7 on a two-view forget batch with retain negatives, in one forward pass over all three."""

    def loss(model: nn.Module, batch: Batch) -> StepOutput:
        if batch.x_view is None or batch.x_neg is None:
            raise ValueError("The contrastive round needs two views and retain negatives.")
        n, n_view = len(batch.x), len(batch.x_view)
        logits, feats = model.forward_with_features(torch.cat([batch.x, batch.x_view, batch.x_neg]))
        z = feats if representation == "features" else logits
        value = contrastive_forget_loss(z[:n], z[n:n + n_view], z[n + n_view:], tau)
        return StepOutput(value, {"contrastive": value.detach()}, logits[:n])

    return loss
