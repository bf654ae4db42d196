"""IU (influence unlearning): one Newton-like step θ ← θ + α·H⁻¹v, no training loop.

v = (n_f / N)(ḡ_f − ḡ_r) with ḡ the mean cross-entropy gradients on D_f and D_r (N = n_f + n_r;
this is the reference code's v, which sums gradients and rescales). H⁻¹v is approximated by
the WoodFisher recursion over per-sample retain gradients, evaluated in closed form.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ..data import Dataset
from ..engine import check_cancel, progress_event, to_float
from ..errors import WssclError
from ..models import Classifier
from ..saliency import loss_gradients
from . import FloatRange, IntRange, MethodConfig, SearchRange, UnlearnContext, register

PHASE, LABEL = "iu", "Influence (WoodFisher) step"
VMAP_ROWS = 64  # per-sample gradients computed in one vectorised call
CPU_GRADIENT_BYTES = 2 << 30  # per-sample gradients held at once on the CPU


@dataclass
class IUConfig(MethodConfig):
    alpha: float = 10.0
    fisher_samples: int = 1000  # per-sample retain gradients in the WoodFisher recursion
    batch_size: int = 256

    SEARCH_SPACE: ClassVar[dict[str, SearchRange]] = {"alpha": FloatRange(0.1, 100.0),
                                                      "fisher_samples": IntRange(100, 2000)}

    def validate(self) -> None:
        super().validate()
        if self.fisher_samples < 1:
            raise WssclError(f"fisher_samples must be at least 1, got {self.fisher_samples}.")


def _flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.flatten() for g in grads.values()])


def per_sample_gradients(model: nn.Module, data: Dataset, indices: torch.Tensor) -> torch.Tensor:
    """(len(indices), num_params) cross-entropy gradients, one row per sample, eval mode."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b for n, b in model.named_buffers()}

    def sample_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, (p, buffers), (x[None],)), y[None])

    x = to_float(data.train.images[indices])
    rows = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, x, data.train.labels[indices])
    return torch.cat([g.flatten(1) for g in rows.values()], 1)


def woodfisher_inverse_product(v: torch.Tensor, rows: Callable[[int, int], torch.Tensor], n: int,
                               block: int | None = None) -> torch.Tensor:
    """H⁻¹v for the WoodFisher estimate H = I + (1/n) Σ g gᵀ over n per-sample gradients g.

    Running the WoodFisher recursion H_k⁻¹ = H_{k−1}⁻¹ − H_{k−1}⁻¹ g gᵀ H_{k−1}⁻¹ / (n + gᵀ H_{k−1}⁻¹ g)
    from H_0 = I gives exactly the Woodbury form used here, v − Gᵀ (n I + G Gᵀ)⁻¹ G v, which
    costs two matrix products instead of n sequential rank-one updates. ``rows(a, b)`` returns
    rows a..b−1 of G. When all n rows do not fit in memory at once (``block`` < n; a ResNet-18's
    1,000 gradients take 45 GB), G Gᵀ is assembled block by block and rows are recomputed instead
    of stored, so memory stays at two blocks whatever n and the model's size.
    """
    block = n if block is None else max(1, block)
    if block >= n:
        grads = rows(0, n)
        gram = grads @ grads.T
        gram.diagonal().add_(n)
        return v - grads.T @ torch.linalg.solve(gram, grads @ v)
    starts = list(range(0, n, block))
    gram = v.new_empty(n, n)
    projected = v.new_empty(n)
    for i, a in enumerate(starts):
        g_a = rows(a, min(a + block, n))
        projected[a:a + len(g_a)] = g_a @ v
        gram[a:a + len(g_a), a:a + len(g_a)] = g_a @ g_a.T
        for b in starts[i + 1:]:
            g_b = rows(b, min(b + block, n))
            gram[a:a + len(g_a), b:b + len(g_b)] = g_a @ g_b.T
            gram[b:b + len(g_b), a:a + len(g_a)] = gram[a:a + len(g_a), b:b + len(g_b)].T
        del g_a
    gram.diagonal().add_(n)
    weights = torch.linalg.solve(gram, projected)
    out = v.clone()
    for a in starts:
        g_a = rows(a, min(a + block, n))
        out -= g_a.T @ weights[a:a + len(g_a)]
    return out


def gradient_block_rows(device: torch.device, num_params: int) -> int:
    """How many per-sample gradient rows to hold at once: two blocks within half the free GPU memory,
    or within ``CPU_GRADIENT_BYTES`` on the CPU."""
    budget = torch.cuda.mem_get_info(device)[0] // 2 if device.type == "cuda" else CPU_GRADIENT_BYTES
    return max(1, budget // (2 * 4 * num_params))


@register("iu", "IU", "influence unlearning: one WoodFisher inverse-Hessian step away from the forget set", IUConfig)
def influence_unlearning(ctx: UnlearnContext, cfg: IUConfig) -> Classifier:
    model = ctx.copy_original().eval()
    forget, retain = ctx.split.forget, ctx.split.retain
    n_f, n_r = len(forget), len(retain)
    block = gradient_block_rows(ctx.device, sum(p.numel() for p in model.parameters() if p.requires_grad))
    picked_count = min(cfg.fisher_samples, n_r)
    blocks = -(-picked_count // block)
    # steps: D_f and D_r gradients, then each block of per-sample gradients computed (blocks are
    # recomputed when they do not all fit: B for G v and the diagonal, B(B−1)/2 pairs, B for Gᵀ)
    total = 2 + (1 if blocks == 1 else blocks * (blocks + 3) // 2)
    report = _reporter(ctx, total_steps=total)
    g_f = _flat(loss_gradients(model, ctx.data, forget, cfg.batch_size, "sum", ctx.cancel)) / n_f
    report("step", 1)
    g_r = _flat(loss_gradients(model, ctx.data, retain, cfg.batch_size, "sum", ctx.cancel)) / n_r
    report("step", 2)
    v = (n_f / (n_f + n_r)) * (g_f - g_r)
    generator = torch.Generator().manual_seed(ctx.seed)
    picked = retain[torch.randperm(n_r, generator=generator)[:cfg.fisher_samples]].to(ctx.device)
    done = 2

    def rows(a: int, b: int) -> torch.Tensor:
        nonlocal done
        out = v.new_empty(b - a, v.numel())
        for start in range(a, b, min(VMAP_ROWS, block)):
            check_cancel(ctx.cancel)
            stop = min(start + min(VMAP_ROWS, block), b)
            out[start - a:stop - a] = per_sample_gradients(model, ctx.data, picked[start:stop])
        done += 1
        report("step", min(done, total - 1))
        return out

    direction = woodfisher_inverse_product(v, rows, len(picked), block)
    with torch.no_grad():
        offset = 0
        for p in (p for p in model.parameters() if p.requires_grad):
            p += cfg.alpha * direction[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
    report("phase_end", total)
    report("end", total)
    return model


def _reporter(ctx: UnlearnContext, total_steps: int):
    """Progress events for a one-shot method (gradients of D_f, D_r, then the update)."""
    start = time.perf_counter()

    def report(kind: str, step: int) -> None:
        if ctx.on_progress is not None:
            ctx.on_progress(progress_event(kind, PHASE, LABEL, step, total_steps, time.perf_counter() - start))

    report("start", 0)
    return report
