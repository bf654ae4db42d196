"""Gradient saliency of the forget set, and the hard (SalUn) and soft (WSS-CL) weight masks.

The saliency of a weight is the forget-set cross-entropy gradient at the original model θo
(summed over forget batches). The hard mask keeps the globally top ``ratio`` fraction of
``|g|``; the soft mask is Eq. 4 of the WSS-CL paper, ``|2σ(g) − 1|``, optionally after a
normalisation of ``g``. Taken literally Eq. 4 is almost zero everywhere on a trained network
(on the shipped model the median |g| is 0.004 and the literal mask's mean 0.003), which scales
every step down by ~100×; the normalisations below bring the typical weight back to a useful
step size; which one is the default is a tuned value (methods/defaults.json). Per-layer summaries feed the studio's
mask heatmaps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import Dataset, ForgetSplit
from .engine import CancelFlag, ProgressFn, check_cancel, progress_event, to_float
from .errors import WssclError

SoftNormalisation = Literal["literal", "global", "per-tensor", "density"]
SOFT_NORMALISATIONS: dict[str, str] = {
    "literal": "Eq. 4 as written: |2σ(g) − 1|",
    "global": "g divided by the mean |g| over all parameters, then Eq. 4 (a typical weight gets ≈ 0.46)",
    "per-tensor": "g divided by the mean |g| of its own tensor, then Eq. 4 (every layer gets the same typical value)",
    "density": "Eq. 4, then scaled (and clipped at 1) so its mean is 0.5, the default hard mask's density",
}
assert tuple(SOFT_NORMALISATIONS) == get_args(SoftNormalisation)
DEFAULT_SOFT_NORMALISATION: SoftNormalisation = "global"  # WSS-CL's tuned value may differ per scenario (defaults.json)
# Samples per backward pass. A batch's gradient is accumulated from chunks (the same sum), so progress
# comes after a chunk: the studio's first live point no longer waits for a 256-image batch on a busy CPU.
GRADIENT_CHUNK = 64


def forget_gradients(model: nn.Module, data: Dataset, forget_idx: torch.Tensor,
                     batch_size: int = 256, cancel: CancelFlag | None = None,
                     on_progress: ProgressFn | None = None) -> dict[str, torch.Tensor]:
    """Sum over forget batches of the gradient of the batch-mean cross-entropy, at the model's weights.

    ``on_progress`` gets one "step" event per batch (phase "saliency", the batch's forget
    cross-entropy at θo as its loss), so a live view has points from the first second of a run.

    Runs in eval mode without augmentation: the saliency describes θo as it predicts, and
    train-mode BatchNorm would both mix batch statistics into the gradient and overwrite the
    running statistics of the model it is asked about. ``model`` is left exactly as it was
    (no ``.grad`` written, no buffer changed).
    """
    if forget_idx.numel() == 0:
        raise WssclError("The forget set is empty, so there is no saliency to compute.")
    return loss_gradients(model, data, forget_idx, batch_size, reduction="mean", cancel=cancel,
                          on_progress=on_progress)


def loss_gradients(model: nn.Module, data: Dataset, indices: torch.Tensor, batch_size: int = 256,
                   reduction: str = "mean", cancel: CancelFlag | None = None,
                   on_progress: ProgressFn | None = None) -> dict[str, torch.Tensor]:
    """Cross-entropy gradients of train samples ``indices`` summed over batches, in eval mode, no augmentation.

    ``reduction`` is the per-batch reduction: "mean" sums batch means (SalUn's saliency),
    "sum" gives the exact sum of per-sample gradients (influence unlearning). Each batch is
    processed in chunks of ``GRADIENT_CHUNK`` samples, with one progress event per chunk.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    sums = {n: torch.zeros_like(p) for n, p in named}
    device = next(model.parameters()).device
    images, labels = data.train.images, data.train.labels
    idx_all = indices.to(images.device)
    was_training = model.training
    model.eval()
    spans = _chunk_spans(len(idx_all), batch_size, min(batch_size, GRADIENT_CHUNK))
    began = time.perf_counter()
    try:
        for step, (lo, hi, batch_len) in enumerate(spans, 1):
            check_cancel(cancel)
            idx = idx_all[lo:hi]
            x = to_float(images[idx].to(device))
            ce_sum = F.cross_entropy(model(x), labels[idx].to(device), reduction="sum")
            loss = ce_sum / batch_len if reduction == "mean" else ce_sum
            for (name, _), g in zip(named, torch.autograd.grad(loss, [p for _, p in named])):
                sums[name] += g
            if on_progress is not None:
                on_progress(progress_event("step", "saliency", "Saliency: forget-set gradients", step, len(spans),
                                           time.perf_counter() - began,
                                           losses={"ce": float(ce_sum.detach()) / len(idx)}))
    finally:
        model.train(was_training)
    return sums


def _chunk_spans(n: int, batch_size: int, chunk: int) -> list[tuple[int, int, int]]:
    """(start, end, size of the enclosing batch) for every chunk of every batch of ``n`` samples."""
    spans = []
    for start in range(0, n, batch_size):
        size = min(batch_size, n - start)
        spans += [(lo, min(lo + chunk, start + size), size) for lo in range(start, start + size, chunk)]
    return spans


def check_mask_ratio(ratio: float) -> None:
    if not 0.0 < ratio <= 1.0:
        raise WssclError(f"The mask ratio (fraction of weights updated) must be in (0, 1], got {ratio}.")


def hard_mask(grads: dict[str, torch.Tensor], ratio: float = 0.5) -> dict[str, torch.Tensor]:
    """1.0 for the global top ``ratio`` fraction of |g| over all parameters together, else 0.0."""
    check_mask_ratio(ratio)
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    keep = int(round(ratio * flat.numel()))
    chosen = torch.zeros_like(flat)
    chosen[torch.topk(flat, keep, sorted=False).indices] = 1.0
    masks, offset = {}, 0
    for name, g in grads.items():
        masks[name] = chosen[offset:offset + g.numel()].view_as(g).clone()
        offset += g.numel()
    return masks


def soft_mask(grads: dict[str, torch.Tensor],
              normalisation: str = DEFAULT_SOFT_NORMALISATION) -> dict[str, torch.Tensor]:
    """Eq. 4, s = |2σ(g) − 1| in [0, 1), after the chosen normalisation (see ``SOFT_NORMALISATIONS``)."""
    if normalisation not in SOFT_NORMALISATIONS:
        raise WssclError(f"Unknown soft-mask normalisation {normalisation!r}; "
                         f"choose one of {', '.join(SOFT_NORMALISATIONS)}.")
    if normalisation == "global":
        scale = torch.cat([g.abs().flatten() for g in grads.values()]).mean()
        scaled = {n: g / scale.clamp_min(1e-12) for n, g in grads.items()}
    elif normalisation == "per-tensor":
        scaled = {n: g / g.abs().mean().clamp_min(1e-12) for n, g in grads.items()}
    else:
        scaled = grads
    masks = {n: (2 * torch.sigmoid(g) - 1).abs() for n, g in scaled.items()}
    if normalisation == "density":
        factor = _factor_for_mean(torch.cat([m.flatten() for m in masks.values()]), target=0.5)
        masks = {n: (m * factor).clamp(max=1.0) for n, m in masks.items()}
    return masks


def _factor_for_mean(values: torch.Tensor, target: float, iterations: int = 40) -> float:
    """The factor c with mean(min(c·values, 1)) = target, by bisection (the mean grows with c)."""
    low, high = 0.0, 1.0
    while float((values * high).clamp(max=1.0).mean()) < target and high < 1e12:
        high *= 2
    for _ in range(iterations):
        mid = (low + high) / 2
        low, high = (mid, high) if float((values * mid).clamp(max=1.0).mean()) < target else (low, mid)
    return high


@dataclass
class LayerSaliency:
    """One parameter tensor's masks, summarised for display. Heatmaps are 2-D, values in [0, 1]."""

    name: str
    shape: tuple[int, ...]
    fraction_selected: float
    mean_soft: float
    heatmap_hard: np.ndarray
    heatmap_soft: np.ndarray


def _heatmap(t: torch.Tensor, max_side: int) -> np.ndarray:
    """Conv weight → out×in (mean over the kernel); matrix as is; 1-D → one row; then average-pooled to ≤ max_side."""
    t = t.detach().float().cpu()
    if t.dim() > 2:
        t = t.flatten(2).mean(2)
    elif t.dim() < 2:
        t = t.reshape(1, -1)
    h, w = t.shape
    return F.adaptive_avg_pool2d(t[None, None], (min(h, max_side), min(w, max_side)))[0, 0].numpy()


def layer_summaries(hard: dict[str, torch.Tensor], soft: dict[str, torch.Tensor],
                    max_side: int = 128) -> list[LayerSaliency]:
    """Per-parameter density of the hard mask, mean of the soft mask and both as heatmaps."""
    return [LayerSaliency(name, tuple(h.shape), float(h.float().mean()), float(soft[name].float().mean()),
                          _heatmap(h, max_side), _heatmap(soft[name], max_side))
            for name, h in hard.items()]


@dataclass
class SaliencyResult:
    """The forget gradients, both masks and their per-layer summaries."""

    grads: dict[str, torch.Tensor]
    hard: dict[str, torch.Tensor]
    soft: dict[str, torch.Tensor]
    layers: list[LayerSaliency]


def compute_saliency(model: nn.Module, data: Dataset, split: ForgetSplit, ratio: float = 0.5,
                     normalisation: str = DEFAULT_SOFT_NORMALISATION) -> SaliencyResult:
    """Everything the studio's saliency view shows, from one pass of forget gradients at θo."""
    grads = forget_gradients(model, data, split.forget)
    hard, soft = hard_mask(grads, ratio), soft_mask(grads, normalisation)
    return SaliencyResult(grads, hard, soft, layer_summaries(hard, soft))
