"""The one training loop that original training, Retrain and every unlearning method run through.

A run is a list of :class:`Phase` objects; an epoch of a phase runs its :class:`Round` s in
order (e.g. a forget round, then a retain round). A round names its index set into the
train split and its loss. Batches are gathered from the whole dataset held on the device
and augmented with tensor ops (airbench style); the optional per-parameter mask scales the
*whole* update (gradient plus weight decay, before momentum), so a weight with mask 0 never
moves. Progress goes to a callback as :class:`ProgressEvent` s; a cancel flag is checked
between steps.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .data import Dataset
from .errors import RunCancelled, RunDiverged, WssclError


# --------------------------------------------------------------------------- batches

def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images to float in [0, 1] (models normalise internally), image batches channels-last like the models."""
    if images.dim() == 4:
        return images.to(dtype=torch.float32, memory_format=torch.channels_last).div_(255.0)
    return images.float().div_(255.0)


def augment_batch(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, for a whole batch at once."""
    b, c, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=generator)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch_idx = torch.arange(b, device=x.device)[:, None, None, None]
        chan_idx = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[batch_idx, chan_idx, rows, cols]
    if flip:
        flip_mask = torch.rand(b, device=x.device, generator=generator) < 0.5
        x = torch.where(flip_mask[:, None, None, None], x.flip(3), x)
    return x


@dataclass
class Batch:
    """One training step's data. ``x_view`` / ``x_neg`` are present when the round asks for them."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    generator: torch.Generator
    epoch: int
    x_view: torch.Tensor | None = None
    x_neg: torch.Tensor | None = None
    y_neg: torch.Tensor | None = None
    progress: float = 0.0  # fraction of the phase done, for schedules inside a loss


@dataclass
class StepOutput:
    """What a loss returns: the scalar to minimise, named terms to report, and optional logits
    (for running accuracy against the true labels)."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    logits: torch.Tensor | None = None


LossFn = Callable[[nn.Module, Batch], StepOutput]


def cross_entropy_loss(model: nn.Module, batch: Batch) -> StepOutput:
    """Plain cross-entropy on the batch's true labels."""
    logits = model(batch.x)
    loss = F.cross_entropy(logits, batch.y)
    return StepOutput(loss, {"ce": loss.detach()}, logits)


@dataclass
class Round:
    """A pass over one index set with one loss, inside an epoch."""

    name: str
    indices: torch.Tensor
    loss: LossFn
    role: Literal["forget", "retain", "train"] = "train"
    augment: bool = True
    two_views: bool = False
    negatives: torch.Tensor | None = None
    num_negatives: int | None = None  # negatives drawn per step; None: the batch size
    batch_size: int | None = None
    max_steps: int | None = None


@dataclass
class Phase:
    """Rounds repeated for ``epochs`` with one SGD optimiser and learning-rate schedule."""

    name: str
    label: str
    rounds: list[Round]
    epochs: int
    lr: float
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    warmup_fraction: float = 0.0
    mask: dict[str, torch.Tensor] | None = None
    grad_clip: float | None = None

    def steps_per_epoch(self) -> int:
        return sum(_round_steps(r, self.batch_size) for r in self.rounds)

    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch()

    def lr_at(self, step: int, total: int) -> float:
        t = step / max(total, 1)
        if self.warmup_fraction > 0 and t < self.warmup_fraction:
            return self.lr * (t / self.warmup_fraction)
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * t))
        if self.schedule == "linear":
            return self.lr * (1 - t)
        return self.lr


def _round_steps(r: Round, default_bs: int) -> int:
    bs = r.batch_size or default_bs
    steps = math.ceil(len(r.indices) / bs) if len(r.indices) else 0
    return min(steps, r.max_steps) if r.max_steps is not None else steps


# --------------------------------------------------------------------------- progress

@dataclass
class ProgressEvent:
    """One progress report. ``kind`` is ``step`` while training, ``phase_end`` / ``end`` at boundaries."""

    kind: Literal["start", "step", "phase_end", "end"]
    phase: str
    phase_label: str
    phase_index: int
    num_phases: int
    epoch: int
    epochs: int
    step: int
    total_steps: int
    losses: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    eta_s: float | None = None
    fraction_done: float = 0.0


ProgressFn = Callable[[ProgressEvent], None]


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


def check_cancel(cancel: CancelFlag | None) -> None:
    if cancel is not None and cancel.is_set():
        raise RunCancelled("The run was stopped; the original model is unchanged.")


@dataclass
class EngineOptions:
    """Speed switches. ``amp`` None means: on for CUDA, off for CPU."""

    amp: bool | None = None
    # NHWC convolutions: 1.3-1.4x faster training on this CPU (oneDNN, docs/BENCHMARKS.md), and cuDNN's fast path.
    channels_last: bool = True
    compile: bool = False
    report_every_s: float = 0.25


@dataclass
class RunStats:
    elapsed_s: float
    steps: int
    last_losses: dict[str, float]


class _Meter:
    """Loss sums and accuracy counts kept on the device; read (one sync) only when reporting."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset_losses()
        self.reset_accuracy()

    def reset_losses(self) -> None:
        self.loss_sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def reset_accuracy(self) -> None:
        self.correct: dict[str, torch.Tensor] = {}
        self.seen: dict[str, int] = {}

    def add(self, out: StepOutput, role: str, y: torch.Tensor) -> None:
        terms = {"loss": out.loss.detach(), **out.terms}
        for k, v in terms.items():
            v = v.detach().float()
            self.loss_sums[k] = self.loss_sums[k] + v if k in self.loss_sums else v.clone()
        self.count += 1
        if out.logits is not None:
            hits = (out.logits.detach().argmax(1) == y).sum()
            self.correct[role] = self.correct[role] + hits if role in self.correct else hits
            self.seen[role] = self.seen.get(role, 0) + int(y.numel())

    def read(self) -> tuple[dict[str, float], dict[str, float]]:
        losses = {k: float(v) / max(self.count, 1) for k, v in self.loss_sums.items()}
        acc = {f"{role}_acc": 100.0 * float(c) / max(self.seen[role], 1) for role, c in self.correct.items()}
        return losses, acc


# --------------------------------------------------------------------------- the loop

def _masked_update_(params: list[torch.Tensor], masks: list[torch.Tensor | None], weight_decay: float) -> None:
    """grad ← mask ⊙ (grad + wd·θ): weight decay joins the gradient so the mask covers it too."""
    grads = [p.grad for p in params]
    if weight_decay:
        torch._foreach_add_(grads, params, alpha=weight_decay)
    for g, m in zip(grads, masks):
        if m is not None:
            g.mul_(m)


def run_phases(
    model: nn.Module,
    data: Dataset,
    phases: list[Phase],
    *,
    seed: int = 0,
    on_progress: ProgressFn | None = None,
    cancel: CancelFlag | None = None,
    options: EngineOptions | None = None,
) -> RunStats:
    """Train ``model`` in place through ``phases``. ``data`` must already be on the model's device."""
    options = options or EngineOptions()
    device = next(model.parameters()).device
    if data.train.images.device != device:
        raise WssclError(f"Dataset is on {data.train.images.device} but the model is on {device}.")
    cuda = device.type == "cuda"
    use_amp = cuda if options.amp is None else options.amp
    channels_last = options.channels_last
    if channels_last:
        model.to(memory_format=torch.channels_last)
    forward_model = torch.compile(model) if options.compile else model
    generator = torch.Generator(device=device).manual_seed(seed)
    images, labels = data.train.images, data.train.labels
    for phase in phases:
        for r in phase.rounds:
            if r.indices.numel() == 0:
                raise WssclError(f"Round '{r.name}' of phase '{phase.label}' has no samples.")

    grand_total = sum(p.total_steps() for p in phases)
    done_before = 0
    start = time.perf_counter()
    meter = _Meter(device)
    last_losses: dict[str, float] = {}

    def emit(kind: str, phase: Phase, index: int, epoch: int, step: int) -> None:
        nonlocal last_losses
        losses, acc = meter.read()
        for k, v in losses.items():
            if not math.isfinite(v):
                raise RunDiverged(f"Training diverged in '{phase.label}' ({k} = {v}); nothing was kept. "
                                  "Try a smaller learning rate.")
        last_losses = losses or last_losses
        meter.reset_losses()
        elapsed = time.perf_counter() - start
        done = done_before + step
        frac = done / max(grand_total, 1)
        eta = elapsed * (1 - frac) / frac if frac > 0 else None
        if on_progress is not None:
            on_progress(ProgressEvent(kind, phase.name, phase.label, index, len(phases), epoch, phase.epochs, step,
                                      phase.total_steps(), losses, {**acc, "lr": phase.lr_at(step, phase.total_steps())},
                                      elapsed, eta, frac))

    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext
    for index, phase in enumerate(phases):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        params = [p for _, p in named]
        masks = [phase.mask.get(n) if phase.mask else None for n, _ in named]
        masks = [m.to(device=device, dtype=p.dtype) if m is not None else None for m, (_, p) in zip(masks, named)]
        opt = torch.optim.SGD(params, lr=phase.lr, momentum=phase.momentum, nesterov=phase.nesterov and phase.momentum > 0,
                              weight_decay=0.0)
        total = phase.total_steps()
        step = 0
        model.train()
        meter.reset_accuracy()
        emit("start", phase, index, 0, 0)
        next_report = time.perf_counter()  # report the first step at once: live charts get a point immediately
        for epoch in range(phase.epochs):
            meter.reset_accuracy()
            for r in phase.rounds:
                bs = r.batch_size or phase.batch_size
                idx_all = r.indices.to(device)
                order = idx_all[torch.randperm(len(idx_all), device=device, generator=generator)]
                neg_pool = r.negatives.to(device) if r.negatives is not None else None
                for b in range(_round_steps(r, phase.batch_size)):
                    check_cancel(cancel)
                    idx = order[b * bs:(b + 1) * bs]
                    raw = to_float(images[idx])
                    x = augment_batch(raw, data.crop_padding, data.flip, generator) if r.augment else raw
                    batch = Batch(x, labels[idx], idx, generator, epoch, progress=step / max(total, 1))
                    if r.two_views:
                        batch.x_view = augment_batch(raw, data.crop_padding, data.flip, generator)
                    if neg_pool is not None:
                        pick = neg_pool[torch.randint(0, len(neg_pool), (r.num_negatives or bs,), device=device,
                                                      generator=generator)]
                        xn = to_float(images[pick])
                        batch.x_neg = augment_batch(xn, data.crop_padding, data.flip, generator) if r.augment else xn
                        batch.y_neg = labels[pick]
                    if channels_last:
                        for name in ("x", "x_view", "x_neg"):
                            t = getattr(batch, name)
                            if t is not None:
                                setattr(batch, name, t.contiguous(memory_format=torch.channels_last))
                    for group in opt.param_groups:
                        group["lr"] = phase.lr_at(step, total)
                    with autocast():
                        out = r.loss(forward_model, batch)
                    opt.zero_grad(set_to_none=True)
                    out.loss.backward()
                    with_grad = [(p, m) for p, m in zip(params, masks) if p.grad is not None]
                    _masked_update_([p for p, _ in with_grad], [m for _, m in with_grad], phase.weight_decay)
                    if phase.grad_clip:
                        nn.utils.clip_grad_norm_([p for p, _ in with_grad], phase.grad_clip)
                    opt.step()
                    meter.add(out, r.role, batch.y)
                    step += 1
                    if time.perf_counter() >= next_report:
                        emit("step", phase, index, epoch, step)
                        next_report = time.perf_counter() + options.report_every_s
        emit("phase_end", phase, index, phase.epochs, step)
        if index == len(phases) - 1:
            emit("end", phase, index, phase.epochs, step)
        done_before += total
    return RunStats(time.perf_counter() - start, done_before, last_losses)


# --------------------------------------------------------------------------- original training

@dataclass
class TrainRecipe:
    """How an original model is trained; stored in its checkpoint so Retrain can repeat it."""

    epochs: int = 15
    lr: float = 0.05
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    schedule: Literal["constant", "cosine", "linear"] = "cosine"
    warmup_fraction: float = 0.05
    augment: bool = True

    def phase(self, indices: torch.Tensor, label: str = "Training", name: str = "train") -> Phase:
        return Phase(name, label, [Round("train", indices, cross_entropy_loss, "train", augment=self.augment)],
                     epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, momentum=self.momentum,
                     weight_decay=self.weight_decay, nesterov=self.nesterov, schedule=self.schedule,
                     warmup_fraction=self.warmup_fraction)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict | None) -> "TrainRecipe":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in (d or {}).items() if k in known})
