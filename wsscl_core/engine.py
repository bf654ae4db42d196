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
from typing import Callable, Literal, Protocol, get_args

import torch
import torch.nn.functional as F
from torch import nn

from .data import Dataset, ImageSet
from .errors import RunCancelled, RunDiverged, WssclError


# SGD weight decay used by the original recipe and, as in SalUn's reference settings, by every method.
WEIGHT_DECAY = 5e-4
Schedule = Literal["constant", "cosine", "linear"]
# How an epoch's samples are cut into its ceil(n / batch_size) batches. "even": sizes that differ by at most
# one. "ragged": full batches and whatever is left over (a DataLoader without drop_last), which every
# checkpoint trained before the choice existed used. On a small train set a left-over batch of a handful of
# images, one step in eight, kept the memorising recipe from memorising (train accuracy 91.7 % against
# 99.4 % with even batches on 900 Fashion-MNIST images; docs/notes/last-batch.md).
Batching = Literal["even", "ragged"]


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
class StopRule:
    """Ends a forgetting phase once the model no longer tells its forget set from unseen images by accuracy.

    Needs no Retrain: after random forgetting, Retrain's accuracy on D_f is about its accuracy on held-out
    images, so a phase that keeps going past that point only overshoots. Checked every ``every`` steps and at
    each epoch's end, on fixed samples of ``sample`` forget and held-out images (eval mode, no augmentation),
    so a method's ``epochs`` become a cap instead of a count that must suit every forget-set size.
    """

    forget: torch.Tensor  # indices into the train split
    holdout: ImageSet
    every: int | None = None  # steps between checks inside an epoch; None: only at the end of each epoch
    sample: int = 512

    def probe(self, data: Dataset) -> Callable[[nn.Module], tuple[float, float]]:
        """Fix the two samples (from a generator of their own, so the run's batches are the same with or
        without the rule) and return the check: the model's accuracy (%) on the forget and held-out samples."""
        pick = torch.Generator().manual_seed(0)
        forget = self.forget.cpu()[torch.randperm(len(self.forget), generator=pick)[: self.sample]]
        held = torch.randperm(len(self.holdout), generator=pick)[: self.sample]
        device = data.train.images.device
        forget_set, held_set = data.train.subset(forget), self.holdout.subset(held)
        pairs = [(s.images.to(device), s.labels.to(device)) for s in (forget_set, held_set)]

        def check(model: nn.Module) -> tuple[float, float]:
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    hits = [100.0 * float((model(to_float(x)).argmax(1) == y).float().mean())
                            for x, y in pairs]
            finally:
                model.train(was_training)
            return hits[0], hits[1]

        return check


@dataclass
class Phase:
    """Rounds repeated for ``epochs`` with one SGD optimiser and learning-rate schedule (and, optionally, a
    :class:`StopRule` that may end it sooner)."""

    name: str
    label: str
    rounds: list[Round]
    epochs: int
    lr: float
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = WEIGHT_DECAY
    nesterov: bool = False
    schedule: Schedule = "constant"
    warmup_fraction: float = 0.0
    mask: dict[str, torch.Tensor] | None = None
    stop: StopRule | None = None

    def round_steps(self, r: Round) -> int:
        """Steps one epoch of round ``r`` (one of this phase's) takes."""
        return _round_steps(r, self.batch_size)

    def steps_per_epoch(self) -> int:
        return sum(self.round_steps(r) for r in self.rounds)

    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch()

    def planned_images(self) -> int:
        """Images the phase forwards and back-propagates if it runs all its epochs: the compute it plans,
        known before it runs (a cost cap needs no timing)."""
        return self.epochs * sum(_round_images(r, self.batch_size) for r in self.rounds)

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


def batch_bounds(n: int, batch_size: int, batching: Batching, max_steps: int | None = None) -> list[tuple[int, int]]:
    """Start and end of each batch of one epoch over n samples: ceil(n / batch_size) batches, or the first
    ``max_steps`` full ones when that is fewer (a pass cut short has no left-over batch to even out)."""
    steps = math.ceil(n / batch_size)
    if max_steps is not None and max_steps < steps:
        return [(b * batch_size, (b + 1) * batch_size) for b in range(max_steps)]
    if batching == "even":
        return [(b * n // steps, (b + 1) * n // steps) for b in range(steps)]
    return [(b * batch_size, min(n, (b + 1) * batch_size)) for b in range(steps)]


def _round_images(r: Round, default_bs: int) -> int:
    """Images one epoch of a round processes: its batches, their second views, and its negatives."""
    bs = r.batch_size or default_bs
    steps = _round_steps(r, default_bs)
    negatives = steps * (r.num_negatives or bs) if r.negatives is not None else 0
    return min(len(r.indices), steps * bs) * (2 if r.two_views else 1) + negatives


# --------------------------------------------------------------------------- progress

@dataclass
class ProgressEvent:
    """One progress report. ``kind`` is ``step`` while training, ``epoch_end`` after each full epoch (a point
    to read the model at), ``phase_end`` / ``end`` at boundaries."""

    kind: Literal["start", "step", "epoch_end", "phase_end", "end"]
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


def progress_event(kind: str, phase: str, label: str, step: int, total_steps: int, elapsed_s: float, *,
                   phase_index: int = 0, num_phases: int = 1, epoch: int = 0, epochs: int = 1,
                   losses: dict[str, float] | None = None, metrics: dict[str, float] | None = None,
                   fraction_done: float | None = None) -> ProgressEvent:
    """The one place events are built: the fraction done defaults to step / total, the ETA follows from it."""
    fraction = step / max(total_steps, 1) if fraction_done is None else fraction_done
    eta = elapsed_s * (1 - fraction) / fraction if fraction > 0 else None
    return ProgressEvent(kind=kind, phase=phase, phase_label=label, phase_index=phase_index, num_phases=num_phases,
                         epoch=epoch, epochs=epochs, step=step, total_steps=total_steps, losses=losses or {},
                         metrics=metrics or {}, elapsed_s=elapsed_s, eta_s=eta, fraction_done=fraction)


ProgressFn = Callable[[ProgressEvent], None]
# Seconds between "step" events; the first step of a phase is always reported (live charts get a point at once).
REPORT_EVERY_S = 0.25


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


def check_cancel(cancel: CancelFlag | None) -> None:
    if cancel is not None and cancel.is_set():
        raise RunCancelled("The run was stopped; the original model is unchanged.")


class _Meter:
    """Loss sums and accuracy counts kept on the device; read (one sync) only when reporting."""

    def __init__(self) -> None:
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

def masked_update_(params: list[torch.Tensor], masks: list[torch.Tensor | None], weight_decay: float) -> None:
    """grad ← mask ⊙ (grad + wd·θ): weight decay joins the gradient so the mask covers it too."""
    grads = [p.grad for p in params]
    if weight_decay:
        torch._foreach_add_(grads, params, alpha=weight_decay)
    for g, m in zip(grads, masks):
        if m is not None:
            g.mul_(m)


def _channels_last(x: torch.Tensor | None) -> torch.Tensor | None:
    return None if x is None else x.contiguous(memory_format=torch.channels_last)


def _make_batch(data: Dataset, r: Round, idx: torch.Tensor, generator: torch.Generator, epoch: int,
                progress: float, num_negatives: int, neg_pool: torch.Tensor | None) -> Batch:
    """Gather, convert and augment one step's images (and the round's views and negatives) on the device."""
    images, labels = data.train.images, data.train.labels
    raw = to_float(images[idx])
    x = augment_batch(raw, data.crop_padding, data.flip, generator) if r.augment else raw
    batch = Batch(x, labels[idx], idx, generator, epoch, progress=progress)
    if r.two_views:
        batch.x_view = augment_batch(raw, data.crop_padding, data.flip, generator)
    if neg_pool is not None:
        pick = neg_pool[torch.randint(0, len(neg_pool), (num_negatives,), device=idx.device, generator=generator)]
        xn = to_float(images[pick])
        batch.x_neg = augment_batch(xn, data.crop_padding, data.flip, generator) if r.augment else xn
        batch.y_neg = labels[pick]
    batch.x, batch.x_view, batch.x_neg = (_channels_last(t) for t in (batch.x, batch.x_view, batch.x_neg))
    return batch


class _Trainer:
    """State shared by the steps of one ``run_phases`` call: model, data, RNG, timing and progress."""

    def __init__(self, model: nn.Module, data: Dataset, phases: list[Phase], seed: int,
                 on_progress: ProgressFn | None, cancel: CancelFlag | None, batching: Batching) -> None:
        self.device = next(model.parameters()).device
        if data.train.images.device != self.device:
            raise WssclError(f"Dataset is on {data.train.images.device} but the model is on {self.device}.")
        for phase in phases:
            for r in phase.rounds:
                if r.indices.numel() == 0:
                    raise WssclError(f"Round '{r.name}' of phase '{phase.label}' has no samples.")
        self.model = model.to(memory_format=torch.channels_last)  # NHWC: faster oneDNN and cuDNN convolutions
        self.data, self.phases, self.on_progress, self.cancel = data, phases, on_progress, cancel
        self.batching = batching
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.autocast = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if self.device.type == "cuda"
                         else contextlib.nullcontext)
        self.grand_total = sum(p.total_steps() for p in phases)
        self.done_before = 0
        self.steps_taken = 0
        self.stop_metrics: dict[str, float] = {}  # set when the current phase's stop rule ended it
        self.checked_at = -1  # the step of the current phase's last stop-rule check
        self.start = time.perf_counter()
        self.meter = _Meter()

    def emit(self, kind: str, phase: Phase, index: int, epoch: int, step: int) -> None:
        """Read the meter, refuse a diverged run, and report. An epoch's end leaves the loss window to the next
        step report, so the live charts' points stay as they are."""
        losses, acc = self.meter.read()
        for k, v in losses.items():
            if not math.isfinite(v):
                raise RunDiverged(f"Training diverged in '{phase.label}' ({k} = {v}); nothing was kept. "
                                  "Try a smaller learning rate.")
        if kind != "epoch_end":
            self.meter.reset_losses()
        if self.on_progress is not None:
            total = phase.total_steps()
            self.on_progress(progress_event(
                kind, phase.name, phase.label, step, total, time.perf_counter() - self.start, phase_index=index,
                num_phases=len(self.phases), epoch=epoch, epochs=phase.epochs, losses=losses,
                metrics={**acc, "lr": phase.lr_at(step, total), **self.stop_metrics},
                # a phase's end counts all its planned steps, also when its stop rule ended it sooner
                fraction_done=(self.done_before + (total if kind in ("phase_end", "end") else step))
                / max(self.grand_total, 1)))

    def run_phase(self, index: int, phase: Phase) -> None:
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        params = [p for _, p in named]
        masks = [phase.mask[n].to(device=self.device, dtype=p.dtype) if phase.mask and n in phase.mask else None
                 for n, p in named]
        optimiser = torch.optim.SGD(params, lr=phase.lr, momentum=phase.momentum,
                                    nesterov=phase.nesterov and phase.momentum > 0, weight_decay=0.0)
        total, step = phase.total_steps(), 0
        check = phase.stop.probe(self.data) if phase.stop is not None else None
        self.stop_metrics, self.checked_at = {}, -1
        self.model.train()
        self.meter.reset_accuracy()
        self.emit("start", phase, index, 0, 0)
        next_report = time.perf_counter()
        for epoch in range(phase.epochs):
            self.meter.reset_accuracy()
            for r in phase.rounds:
                for batch in self._batches(phase, r, epoch, step, total):
                    check_cancel(self.cancel)
                    for group in optimiser.param_groups:
                        group["lr"] = phase.lr_at(step, total)
                    self._step(optimiser, params, masks, phase.weight_decay, r, batch)
                    step += 1
                    if time.perf_counter() >= next_report:
                        self.emit("step", phase, index, epoch, step)
                        next_report = time.perf_counter() + REPORT_EVERY_S
                    due = check is not None and phase.stop.every and step % phase.stop.every == 0
                    if due and self._stopped(check, step):
                        break
                if self.stop_metrics:
                    break
            if self.stop_metrics or (check is not None and self._stopped(check, step)):
                break
            self.emit("epoch_end", phase, index, epoch + 1, step)
        self.emit("phase_end", phase, index, epoch + 1 if self.stop_metrics else phase.epochs, step)
        if index == len(self.phases) - 1:
            self.emit("end", phase, index, phase.epochs, step)
        self.done_before += total
        self.steps_taken += step

    def _stopped(self, check: Callable[[nn.Module], tuple[float, float]], step: int) -> bool:
        """Whether the phase's stop rule holds now; when it does, its accuracies join the phase's last reports.
        An epoch's end that was also a step check is not evaluated twice (the model has not moved since)."""
        if step == self.checked_at:
            return False
        self.checked_at = step
        forget_acc, holdout_acc = check(self.model)
        if forget_acc > holdout_acc:
            return False
        self.stop_metrics = {"stopped_at_step": float(step), "stop_forget_accuracy": forget_acc,
                             "stop_holdout_accuracy": holdout_acc}
        return True

    def _batches(self, phase: Phase, r: Round, epoch: int, first_step: int, total: int):
        """One epoch of a round: a fresh permutation of its indices, cut into batches, built lazily."""
        bs = r.batch_size or phase.batch_size
        idx_all = r.indices.to(self.device)
        order = idx_all[torch.randperm(len(idx_all), device=self.device, generator=self.generator)]
        neg_pool = r.negatives.to(self.device) if r.negatives is not None else None
        for b, (start, end) in enumerate(batch_bounds(len(idx_all), bs, self.batching, r.max_steps)):
            yield _make_batch(self.data, r, order[start:end], self.generator, epoch,
                              (first_step + b) / max(total, 1), r.num_negatives or bs, neg_pool)

    def _step(self, optimiser: torch.optim.Optimizer, params: list[torch.Tensor], masks: list[torch.Tensor | None],
              weight_decay: float, r: Round, batch: Batch) -> None:
        """Loss, backward, the masked update (gradient plus weight decay) and the optimiser step."""
        with self.autocast():
            out = r.loss(self.model, batch)
        optimiser.zero_grad(set_to_none=True)
        out.loss.backward()
        with_grad = [(p, m) for p, m in zip(params, masks) if p.grad is not None]
        masked_update_([p for p, _ in with_grad], [m for _, m in with_grad], weight_decay)
        optimiser.step()
        self.meter.add(out, r.role, batch.y)


def run_phases(model: nn.Module, data: Dataset, phases: list[Phase], *, seed: int = 0,
               on_progress: ProgressFn | None = None, cancel: CancelFlag | None = None,
               batching: Batching = "even") -> int:
    """Train ``model`` in place through ``phases``; returns the number of optimiser steps taken (fewer than
    planned when a phase's stop rule ended it early).

    ``data`` must already be on the model's device. CUDA runs use bfloat16 autocast; every run
    uses channels-last convolutions. The cancel flag is checked before every step. ``batching`` is the
    original's recipe's, so that unlearning and Retrain cut batches as the original's training did.
    """
    trainer = _Trainer(model, data, phases, seed, on_progress, cancel, batching)
    for index, phase in enumerate(phases):
        trainer.run_phase(index, phase)
    return trainer.steps_taken


# --------------------------------------------------------------------------- original training

@dataclass
class TrainRecipe:
    """How an original model is trained; stored in its checkpoint so Retrain can repeat it exactly.

    The default is the papers' regime: no augmentation and enough epochs for the model to memorise
    its train set (train accuracy ≈ 100 %), so that there is something for unlearning to undo.
    """

    epochs: int = 30
    lr: float = 0.05
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = WEIGHT_DECAY
    nesterov: bool = True
    schedule: Schedule = "cosine"
    warmup_fraction: float = 0.05
    augment: bool = False
    batching: Batching = "even"

    def validate(self) -> "TrainRecipe":
        """Refuse a recipe that cannot train (the same kind of checks as a method's hyperparameters)."""
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise WssclError(f"The recipe's {name} must be a whole number of at least 1, got {value!r}.")
        # (name, smallest allowed, largest allowed); lr must also be above 0
        for name, low, high in (("lr", 0.0, 10.0), ("momentum", 0.0, 1.0), ("weight_decay", 0.0, 1.0),
                                ("warmup_fraction", 0.0, 1.0)):
            value = getattr(self, name)
            ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
                  and low <= value <= high and (name != "lr" or value > 0))
            if not ok:
                raise WssclError(f"The recipe's {name} must be a number from {low:g} to {high:g}"
                                 f"{' (above 0)' if name == 'lr' else ''}, got {value!r}.")
        for name, allowed in (("schedule", get_args(Schedule)), ("batching", get_args(Batching))):
            if getattr(self, name) not in allowed:
                raise WssclError(f"The recipe's {name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}.")
        return self

    def phase(self, indices: torch.Tensor, label: str = "Training", name: str = "train") -> Phase:
        return Phase(name, label, [Round("train", indices, cross_entropy_loss, "train", augment=self.augment)],
                     epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, momentum=self.momentum,
                     weight_decay=self.weight_decay, nesterov=self.nesterov, schedule=self.schedule,
                     warmup_fraction=self.warmup_fraction)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict | None) -> "TrainRecipe":
        """The recipe a checkpoint recorded (every field is written by :meth:`to_dict`). A recipe recorded
        before ``batching`` existed trained with ragged batches, so it repeats them."""
        known = set(cls.__dataclass_fields__)
        recorded = {k: v for k, v in (d or {}).items() if k in known}
        if d is not None:
            recorded.setdefault("batching", "ragged")
        return cls(**recorded)


# Named recipes for ``train --recipe``: the papers' memorising regime (the default), and the earlier
# augmented recipe, which generalises about as well but leaves RA ≈ TA (little to unlearn).
RECIPES: dict[str, TrainRecipe] = {
    "memorise": TrainRecipe(),
    "augmented": TrainRecipe(epochs=15, augment=True),
}
