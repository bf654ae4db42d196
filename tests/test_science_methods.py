"""Each unlearning method moves its target quantity the way shared/METHOD.md says, on digits.

Expected values come from the formulas worked by hand (the mask times the unmasked step, the
influence step by explicit matrix inversion, FGSM on a four-pixel model) or from a
property the method must have (SalUn never moves a weight outside its mask, stage 2 lowers
Eq. 7, IU raises the forget loss, ℓ1 lowers ‖θ‖₁).
"""

from __future__ import annotations

import copy
import math
import threading
import time
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsscl_core.data import ForgetSpec, ForgetSplit, make_forget_split
from wsscl_core.engine import Batch, to_float
from wsscl_core.errors import RunCancelled, WssclError
from wsscl_core.methods import UnlearnContext, make_config, method_names, run_unlearning
from wsscl_core.methods.be import shadow_class_loss
from wsscl_core.methods.bs import nearest_wrong_class
from wsscl_core.methods.l1_sparse import l1_penalised_cross_entropy
from wsscl_core.methods.losses import contrastive_round_loss, random_label_cross_entropy
from wsscl_core.metrics import predict_logits


@pytest.fixture()
def ctx_split(digits_workspace) -> Callable[..., UnlearnContext]:
    """Contexts on the digits workspace: ``ctx_split("class:3", seed=1, on_progress=...)``."""
    def make(forget: str, seed: int = 0, **kwargs) -> UnlearnContext:
        data = digits_workspace.data
        return digits_workspace.context(make_forget_split(data.train.labels, ForgetSpec.parse(forget, 0),
                                                          data.num_classes), seed, **kwargs)
    return make


@pytest.fixture()
def ctx(ctx_split) -> UnlearnContext:
    """10 % random forgetting on digits: 140 forget samples (one batch of 256), 1,260 retain."""
    return ctx_split("random:0.1")


def _parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _forget_gradient(ctx: UnlearnContext) -> dict[str, torch.Tensor]:
    """Saliency by hand: the gradient of the mean forget cross-entropy at θo, eval mode, one batch."""
    model = copy.deepcopy(ctx.original).eval()
    forget = ctx.split.forget
    loss = F.cross_entropy(model(to_float(ctx.data.train.images[forget])), ctx.data.train.labels[forget])
    names, params = zip(*model.named_parameters())
    return dict(zip(names, torch.autograd.grad(loss, params)))


def _mean_ce(model: nn.Module, ctx: UnlearnContext, idx: torch.Tensor) -> float:
    return float(F.cross_entropy(predict_logits(model, ctx.data.train.images[idx]), ctx.data.train.labels[idx]))


# --------------------------------------------------------------------------- WSS-CL and SalUn: the masks at work

@pytest.mark.parametrize("normalisation", ["literal", "global", "per-tensor"])
def test_wsscl_moves_each_weight_by_eq4_of_its_saliency_times_cls_step(ctx, normalisation):
    """One stage-1 step (140 forget samples, batch 256): WSS-CL's update is CL's unmasked update times
    s = |2σ(g/c) − 1| = tanh(|g| / 2c), c = 1, the mean |g| overall, or the mean |g| of the tensor."""
    # one step: without the forget pass floor, which WSS-CL's random defaults take (its repeats: tested below)
    one_step = {"stage1_epochs": 1, "stage2_epochs": 0, "stage1_lr": 0.5, "batch_size": 256, "forget_pass_floor": False}
    start = _parameters(ctx.original)
    unmasked = _parameters(run_unlearning("cl", ctx, one_step).model)
    masked = _parameters(run_unlearning("wsscl", ctx, {**one_step, "mask_normalisation": normalisation}).model)
    g = _forget_gradient(ctx)
    overall = float(torch.cat([v.abs().flatten() for v in g.values()]).mean())
    for name, g_name in g.items():
        scale = {"literal": 1.0, "global": overall, "per-tensor": float(g_name.abs().mean())}[normalisation]
        s = torch.tanh(g_name.abs() / (2 * scale))
        torch.testing.assert_close(masked[name] - start[name], s * (unmasked[name] - start[name]),
                                   rtol=1e-3, atol=2e-7, msg=f"{name}: the update is not s times CL's")


@pytest.mark.parametrize("ratio", [0.5, 0.3])
def test_salun_moves_only_the_weights_of_its_hard_mask(ctx, ratio):
    """Weights below the top-``ratio`` |g| of the forget gradient stay bit-identical (gradient, weight
    decay and momentum all masked); nearly all of the selected ones move. A thin band around the
    threshold is left out: summation order may swap two neighbours there."""
    out = run_unlearning("salun", ctx, {"epochs": 1, "mask_ratio": ratio})
    g = _forget_gradient(ctx)
    magnitudes = torch.cat([v.abs().flatten() for v in g.values()])
    threshold = float(magnitudes.sort(descending=True).values[round(ratio * magnitudes.numel()) - 1])
    before, after = _parameters(ctx.original), _parameters(out.model)
    moved = selected = 0
    for name, g_name in g.items():
        outside = g_name.abs() < threshold * (1 - 1e-3)
        assert torch.equal(after[name][outside], before[name][outside]), f"{name} moved outside the mask"
        inside = g_name.abs() > threshold * (1 + 1e-3)
        moved += int((after[name][inside] != before[name][inside]).sum())
        selected += int(inside.sum())
    assert selected == pytest.approx(ratio * magnitudes.numel(), rel=0.01)
    assert moved > 0.99 * selected


# --------------------------------------------------------------------------- stage 2: Eq. 7 goes down

def _eq7(z: torch.Tensor, z_view: torch.Tensor, z_neg: torch.Tensor, tau: float = 1.4) -> float:
    """Eq. 7 written out: −log(e^{sim(z,z')/τ} / (e^{sim(z,z')/τ} + Σ_r e^{sim(z,z_r)/τ})), batch mean."""
    positive = torch.exp(F.cosine_similarity(z, z_view, dim=1) / tau)
    negatives = torch.exp(F.cosine_similarity(z[:, None], z_neg[None], dim=2) / tau).sum(1)
    return float(-(positive / (positive + negatives)).log().mean())


def _fixed_contrast_batch(ctx: UnlearnContext) -> Batch:
    """Every forget image, its copy shifted down one pixel as the view, 128 fixed retain images as negatives."""
    forget = ctx.split.forget
    x = to_float(ctx.data.train.images[forget])
    negatives = ctx.split.retain[torch.randperm(ctx.split.num_retain, generator=torch.Generator().manual_seed(1))[:128]]
    return Batch(x, ctx.data.train.labels[forget], forget, torch.Generator().manual_seed(0), 0,
                 x_view=F.pad(x, (0, 0, 1, 0))[..., :-1, :], x_neg=to_float(ctx.data.train.images[negatives]))


def _eq7_on(model: nn.Module, batch: Batch, representation: str = "logits") -> float:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        encode = model if representation == "logits" else model.features
        value = _eq7(encode(batch.x), encode(batch.x_view), encode(batch.x_neg))
    model.train(was_training)
    return value


@pytest.mark.parametrize("representation, kept", [("logits", None), ("features", None), ("logits", [0, 1, 2, 4])])
def test_stage2_forget_loss_is_eq7_on_the_chosen_representation(ctx, representation, kept):
    """Eq. 7 on penultimate features or on logits (only the kept classes' logits when given), τ = 1.4;
    the logits it reports for accuracy are the forget batch's."""
    model = copy.deepcopy(ctx.original).eval()
    batch = _fixed_contrast_batch(ctx)
    classes = None if kept is None else torch.tensor(kept)
    out = contrastive_round_loss(representation, 1.4, classes)(model, batch)
    with torch.no_grad():
        def encode(x: torch.Tensor) -> torch.Tensor:
            z = model.features(x) if representation == "features" else model(x)
            return z if kept is None else z[:, kept]

        expected = _eq7(encode(batch.x), encode(batch.x_view), encode(batch.x_neg))
        assert float(out.loss) == pytest.approx(expected, rel=1e-5)
        torch.testing.assert_close(out.logits, model(batch.x))
    with pytest.raises(ValueError, match="two views and retain negatives"):
        contrastive_round_loss(representation, 1.4, classes)(model, Batch(batch.x, batch.y, batch.index,
                                                                          batch.generator, 0, x_view=batch.x_view))


@pytest.mark.parametrize("representation", ["logits", "features"])
def test_a_gradient_step_on_the_stage2_forget_loss_lowers_eq7(ctx, representation):
    """First order: a small step against the gradient of the forget round's loss lowers Eq. 7 on its batch."""
    model = copy.deepcopy(ctx.original).eval()
    batch = _fixed_contrast_batch(ctx)
    before = _eq7_on(model, batch, representation)
    loss = contrastive_round_loss(representation, 1.4)(model, batch).loss
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True)):
            if g is not None:  # with features as z the head takes no part
                p -= 0.05 * g
    assert _eq7_on(model, batch, representation) < before - 2e-3


def test_stage2_pulls_forget_samples_to_their_views_and_away_from_retain_samples(ctx):
    """CL with stage 2 only (one retain step per epoch) lowers Eq. 7 on a fixed forget batch."""
    batch = _fixed_contrast_batch(ctx)
    out = run_unlearning("cl", ctx, {"stage1_epochs": 0, "stage2_epochs": 3, "stage2_lr": 0.05, "retain_ratio": 0.1})
    assert _eq7_on(out.model, batch) < _eq7_on(ctx.original, batch) - 0.01


# --------------------------------------------------------------------------- IU

class _SoftmaxRegression(nn.Module):
    """Logits W·x + b on the 64 pixels: per-sample gradients are (p − e_y) xᵀ and p − e_y."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def test_iu_is_one_woodfisher_newton_step_by_explicit_inversion(digits):
    """θu − θo = α H⁻¹ v with v = n_f/N (ḡ_f − ḡ_r), H = I + (1/n) Σ g gᵀ over all retain samples
    (fisher_samples ≥ n_r), all in closed form for softmax regression and float64."""
    model = _SoftmaxRegression()
    forget, retain = torch.arange(20), torch.arange(20, 120)
    split = ForgetSplit(ForgetSpec("random", fraction=20 / 120), forget, retain)
    ctx = UnlearnContext(model, digits, split, "softmax-regression")
    alpha = 0.5
    out = run_unlearning("iu", ctx, {"alpha": alpha, "fisher_samples": 1000})

    w, b = model.linear.weight.detach().double(), model.linear.bias.detach().double()

    def per_sample(idx: torch.Tensor) -> torch.Tensor:
        x = digits.train.images[idx].double().div(255).flatten(1)
        residual = torch.softmax(x @ w.T + b, 1) - F.one_hot(digits.train.labels[idx], 10).double()
        return torch.cat([(residual[:, :, None] * x[:, None, :]).flatten(1), residual], 1)

    g_r = per_sample(retain)
    v = 20 / 120 * (per_sample(forget).mean(0) - g_r.mean(0))
    hessian = torch.eye(len(v), dtype=torch.float64) + g_r.T @ g_r / len(retain)
    step = alpha * torch.linalg.solve(hessian, v)
    after = out.model.linear
    torch.testing.assert_close((after.weight.detach().double() - w).flatten(), step[:640], rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(after.bias.detach().double() - b, step[640:], rtol=1e-3, atol=1e-6)


def test_iu_raises_the_forget_loss_more_than_the_retain_loss(ctx):
    """d(L_f − L_r) along α H⁻¹ v is α (n_f/N) (ḡ_f − ḡ_r)ᵀ H⁻¹ (ḡ_f − ḡ_r) > 0: the step is away from D_f."""
    out = run_unlearning("iu", ctx, {"alpha": 1.0, "fisher_samples": 64})
    forget, retain = ctx.split.forget, ctx.split.retain
    gap_before = _mean_ce(ctx.original, ctx, forget) - _mean_ce(ctx.original, ctx, retain)
    gap_after = _mean_ce(out.model, ctx, forget) - _mean_ce(out.model, ctx, retain)
    assert _mean_ce(out.model, ctx, forget) > _mean_ce(ctx.original, ctx, forget)
    assert gap_after > gap_before


# --------------------------------------------------------------------------- BS

class _FourPixelModel(nn.Module):
    """z0 = 2, z1 = x1 + 0.1 − 3·x4, z2 = 4·x2 − 1.5 + 4·relu(x3 − 0.5): class 0 always wins. For y = 0 the
    CE gradient wrt x is p1·(1, 0, 0, −3) + p2·(0, 4, 4·[x3 > 0.5], 0): FGSM raises x1 and x2, lowers x4
    and leaves x3 (zero gradient below 0.5) where it is."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, -3.0], [0.0, 4.0, 0.0]]))
        self.bias = nn.Parameter(torch.tensor([2.0, 0.1, -1.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        logits = x[:, [0, 1, 3]] @ self.weight.T + self.bias
        return logits + F.pad(4 * F.relu(x[:, 2:3] - 0.5), (2, 0))


def test_fgsm_finds_the_nearest_wrong_class_by_hand():
    """Step 0.1 along the gradient sign, clamped to [0, 1], then the top class other than y:
    (0.5, 0.5, 0.3, 0) → (0.6, 0.6, 0.3, 0): z1 = 0.7 < z2 = 0.9, class 2 (class 1 before the step, 0 overall);
    (0.97, 0.56, 0.3, 0) → (1, 0.66, 0.3, 0): z1 = 1.1 < z2 = 1.14, class 2 (unclamped z1 = 1.17, class 1);
    (0.9, 0.2, 0.3, 0) → (1, 0.3, 0.3, 0): z1 = 1.1 > z2 = −0.3, class 1 (x3 moved to 1 would give z2 = 1.7);
    y = 1 at (0.5, 0.5, 0.3, 0): x2 rises to 0.6, wrong classes z0 = 2 > z2 = 0.9: class 0;
    (0.5, 0.47, 0.3, 0.05) → (0.6, 0.57, 0.3, 0): z1 = 0.7 < z2 = 0.78, class 2 (unclamped x4 = −0.05: z1 = 0.85)."""
    x = torch.tensor([[0.5, 0.5, 0.3, 0.0], [0.97, 0.56, 0.3, 0.0], [0.9, 0.2, 0.3, 0.0], [0.5, 0.5, 0.3, 0.0],
                      [0.5, 0.47, 0.3, 0.05]])
    y = torch.tensor([0, 0, 0, 1, 0])
    frozen = _FourPixelModel().requires_grad_(False)
    assert nearest_wrong_class(frozen, x, y, 0.1).tolist() == [2, 2, 1, 0, 2]
    assert nearest_wrong_class(frozen, x, y, 0.0).tolist() == [1, 1, 1, 0, 1]


def test_bs_moves_forget_predictions_toward_their_fgsm_class(ctx):
    """Training D_f towards the FGSM class of θo raises that class's log-probability and drops forget accuracy."""
    forget = ctx.split.forget
    x, y = to_float(ctx.data.train.images[forget]), ctx.data.train.labels[forget]
    target = nearest_wrong_class(copy.deepcopy(ctx.original).eval().requires_grad_(False), x, y, 0.1)
    assert not torch.any(target == y)

    def target_log_prob_and_accuracy(model: nn.Module) -> tuple[float, float]:
        logits = predict_logits(model, ctx.data.train.images[forget])
        log_p = F.log_softmax(logits, 1).gather(1, target[:, None])
        return float(log_p.mean()), float((logits.argmax(1) == y).float().mean())

    out = run_unlearning("bs", ctx, {"epochs": 3, "lr": 0.01, "batch_size": 32})
    log_p_before, acc_before = target_log_prob_and_accuracy(ctx.original)
    log_p_after, acc_after = target_log_prob_and_accuracy(out.model)
    assert log_p_after > log_p_before + 2.0
    assert acc_after < acc_before - 0.3


# --------------------------------------------------------------------------- ℓ1-sparse

class _FixedLogitsWithWeights(nn.Module):
    """Logits (2, 0, −1) whatever the input, and weights with ‖θ‖₁ = 1 + 2 + 3 = 6."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[2.0, 0.0, -1.0]]).expand(len(x), 3) + 0 * self.w.sum()


@pytest.mark.parametrize("progress", [0.0, 0.25, 1.0])
def test_l1_loss_is_ce_plus_a_linearly_decaying_l1_term(progress):
    """CE(label 0) = log(e² + 1 + e⁻¹) − 2; penalty α (1 − progress) ‖θ‖₁ = 0.1 (1 − progress) 6."""
    batch = Batch(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long), torch.arange(2), torch.Generator(), 0,
                  progress=progress)
    out = l1_penalised_cross_entropy(0.1)(_FixedLogitsWithWeights(), batch)
    ce = math.log(math.exp(2) + 1 + math.exp(-1)) - 2
    assert float(out.loss.detach()) == pytest.approx(ce + 0.1 * (1 - progress) * 6, rel=1e-6)
    assert float(out.terms["l1"]) == pytest.approx(6.0)


def test_l1_sparse_shrinks_the_weights_more_than_plain_retain_fine_tuning(ctx):
    """Same seed, same batches: the ℓ1 term is the only difference, and it lowers ‖θ‖₁."""
    def l1_norm(alpha: float) -> float:
        model = run_unlearning("l1_sparse", ctx, {"epochs": 1, "alpha": alpha}).model
        return sum(float(p.detach().abs().sum()) for p in model.parameters())

    assert l1_norm(5e-3) < l1_norm(0.0) - 1.0


# --------------------------------------------------------------------------- BE and RL's losses by hand

class _FixedLogits(nn.Module):
    def __init__(self, logits: list[list[float]]) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits


def _batch(n: int, generator: torch.Generator | None = None) -> Batch:
    return Batch(torch.zeros(n, 1), torch.zeros(n, dtype=torch.long), torch.arange(n),
                 generator or torch.Generator(), 0)


def test_be_trains_the_forget_set_towards_the_extra_class():
    """With K + 1 = 3 outputs the target is class 2: CE = log(e + e² + e³) − 3."""
    out = shadow_class_loss(_FixedLogits([[1.0, 2.0, 3.0]]), _batch(1))
    assert float(out.loss.detach()) == pytest.approx(math.log(math.e + math.e ** 2 + math.e ** 3) - 3, rel=1e-6)


def test_be_with_a_vanishing_step_gives_back_the_original_model(ctx):
    """Adding the shadow class and removing it again keeps every original row of the head."""
    out = run_unlearning("be", ctx, {"epochs": 1, "lr": 1e-30, "weight_decay": 0.0})
    before, after = _parameters(ctx.original), _parameters(out.model)
    assert before.keys() == after.keys()
    for name in before:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=1e-12, msg=name)


def test_random_labels_come_from_the_run_s_generator():
    """Fresh labels each step from the batch's generator: the same generator state gives the same labels,
    whatever the global random state."""
    logits = [[1.0, -2.0, 0.5, 3.0]] * 32
    values = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        batch = _batch(32, torch.Generator().manual_seed(7))
        values.append(float(random_label_cross_entropy()(_FixedLogits(logits), batch).loss.detach()))
    assert values[0] == values[1]


# --------------------------------------------------------------------------- every hyperparameter reaches the run

BASE = {  # short schedules on digits
    "ft": {"epochs": 1}, "rl": {"epochs": 1}, "ga": {"epochs": 1}, "l1_sparse": {"epochs": 1}, "bs": {"epochs": 1},
    "be": {"epochs": 1}, "salun": {"epochs": 1}, "iu": {"fisher_samples": 32},
    **{m: {"stage1_epochs": 1, "stage2_epochs": 1} for m in ("cl", "wscl", "wsscl")},
}
# (method, hyperparameter, two values, forget set): the two values must give different models.
# target_classes only matters when D_f takes a whole class; IU's batch_size does not matter (an exact sum).
CHANGES = [
    *[(m, "epochs", 1, 2, "random:0.1") for m in ("ft", "rl", "ga", "l1_sparse", "bs", "be", "salun")],
    *[(m, "lr", 0.01, 0.02, "random:0.1") for m in ("ft", "rl", "ga", "l1_sparse", "bs", "be", "salun")],
    *[(m, "batch_size", 64, 128, "random:0.1") for m in ("ft", "rl", "ga", "l1_sparse", "bs", "be", "salun", "cl")],
    *[(m, "weight_decay", 0.0, 0.05, "random:0.1")
      for m in ("ft", "rl", "ga", "l1_sparse", "bs", "be", "salun", "cl", "wscl", "wsscl")],
    ("rl", "target_classes", "retain", "all", "class:3"),
    ("salun", "target_classes", "retain", "all", "class:3"),
    ("salun", "mask_ratio", 0.3, 0.5, "random:0.1"),
    ("l1_sparse", "alpha", 0.0, 5e-3, "random:0.1"),
    ("iu", "alpha", 1.0, 2.0, "random:0.1"),
    ("iu", "fisher_samples", 16, 32, "random:0.1"),
    ("bs", "fgsm_step", 0.1, 0.3, "random:0.1"),
    ("cl", "stage1_epochs", 0, 1, "random:0.1"),
    ("cl", "stage2_epochs", 0, 1, "random:0.1"),
    ("cl", "stage1_lr", 0.01, 0.02, "random:0.1"),
    ("cl", "stage2_lr", 0.01, 0.02, "random:0.1"),
    ("cl", "tau", 1.4, 0.5, "random:0.1"),
    ("cl", "representation", "logits", "features", "random:0.1"),
    ("cl", "retain_ratio", 1.0, 3.0, "random:0.1"),
    ("cl", "num_negatives", 7, 128, "random:0.1"),
    ("cl", "target_classes", "retain", "all", "class:3"),
    # stage 2 alone: the kept classes reach the contrastive loss through its logits (features have no classes)
    ("cl", "target_classes", "retain", "all", "class:3", {"stage1_epochs": 0, "representation": "logits"}),
    ("cl", "target_classes", "retain", "all", "class:3", {"stage2_epochs": 0}),
    ("wscl", "mask_ratio", 0.3, 0.5, "random:0.1"),
    ("wsscl", "mask_normalisation", "global", "per-tensor", "random:0.1"),
]


def _change_id(change: tuple) -> str:
    method, key, _, _, forget, *extra = change
    return "-".join([method, key, forget, *(str(e) for e in extra)])


@pytest.mark.parametrize("change", CHANGES, ids=_change_id)
def test_every_hyperparameter_reaches_the_run(ctx_split, change):
    method, key, first, second, forget, *extra = change
    ctx = ctx_split(forget)
    base = {**BASE[method], **(extra[0] if extra else {})}
    models = [run_unlearning(method, ctx, {**base, key: value}).model.state_dict() for value in (first, second)]
    assert any(not torch.equal(models[0][k], models[1][k]) for k in models[0]), f"{method}: {key} changed nothing"


def test_the_seed_reaches_the_engine(ctx_split):
    """Same seed, same model; another seed, other batches."""
    runs = [run_unlearning("rl", ctx_split("random:0.1", seed), {"epochs": 1}).model.state_dict() for seed in (1, 1, 2)]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


@pytest.mark.parametrize("method, overrides, phases", [
    # 140 forget and 1,260 retain samples in batches of 32: 5 and 40 batches
    ("rl", {"epochs": 2, "batch_size": 32}, [("random_labels", 2 * (5 + 40))]),
    ("salun", {"epochs": 1, "batch_size": 32}, [("random_labels", 5 + 40)]),
    # stage 2: 5 forget batches and round(0.2 · 5) = 1 retain batch per epoch
    ("cl", {"stage1_epochs": 1, "stage2_epochs": 2, "retain_ratio": 0.2, "batch_size": 32},
     [("stage1", 5), ("stage2", 2 * (5 + 1))]),
    # without the forget pass floor of WSS-CL's random defaults, whose repeats have their own test
    ("wsscl", {"stage1_epochs": 0, "stage2_epochs": 1, "retain_ratio": 1.4, "batch_size": 32,
               "forget_pass_floor": False}, [("stage2", 5 + 7)]),
])
def test_each_phase_runs_its_rounds_over_the_right_sets(ctx_split, method, overrides, phases):
    """Phases, step counts and the roles whose accuracies the run reports, from the method's description."""
    events = []
    run_unlearning(method, ctx_split("random:0.1", on_progress=events.append), overrides)
    ends = [e for e in events if e.kind == "phase_end"]
    assert [(e.phase, e.total_steps) for e in ends] == phases
    for end in ends:
        roles = {"stage1": {"forget_acc"}}.get(end.phase, {"forget_acc", "retain_acc"})
        assert set(end.metrics) - {"lr"} == roles


@pytest.mark.parametrize("method, overrides", [
    ("rl", {"epochs": 1, "lr": 0.01, "batch_size": 128}),
    ("cl", {"stage1_epochs": 1, "stage1_lr": 0.02, "stage2_epochs": 1, "stage2_lr": 0.01, "batch_size": 128}),
])
def test_a_learning_rate_per_forget_sample_scales_every_forget_phase_by_the_forget_share(ctx_split, method, overrides):
    """With ``lr_per_forget_sample`` the values are those of a 10 % forget set: on random 50 % every phase that
    trains on D_f runs at its rate × 0.1 / (|D_f| / |train|), step for step the run with those rates given."""
    ctx = ctx_split("random:0.5")
    factor = 0.1 * (ctx.split.num_forget + len(ctx.split.retain)) / ctx.split.num_forget
    assert factor == pytest.approx(0.2, abs=1e-3)
    per_sample = run_unlearning(method, ctx, {**overrides, "lr_per_forget_sample": True}).model.state_dict()
    scaled = {k: v * factor if k.endswith("lr") else v for k, v in overrides.items()}
    given = run_unlearning(method, ctx, scaled).model.state_dict()
    per_step = run_unlearning(method, ctx, overrides).model.state_dict()
    assert all(torch.allclose(per_sample[k], given[k], rtol=0, atol=1e-6) for k in given)
    assert any(not torch.allclose(per_sample[k], per_step[k], atol=1e-4) for k in given)


@pytest.mark.parametrize("option", ["lr_per_forget_sample", "forget_pass_floor"])
def test_only_methods_with_forget_rounds_offer_the_forget_set_round_options(option):
    """FT and ℓ1-sparse train on D_r alone: the option is neither shown nor accepted."""
    from wsscl_core.methods import settable_fields

    for method in ("ft", "l1_sparse"):
        assert option not in {f.name for f in settable_fields(make_config(method))}
        with pytest.raises(WssclError, match=f"{option} needs rounds on the forget set"):
            make_config(method, {option: True})
    for method in ("rl", "ga", "wsscl"):
        assert option in {f.name for f in settable_fields(make_config(method))}


def test_the_forget_pass_floor_repeats_a_phase_by_its_forget_steps_against_a_1000_image_pass():
    """1,000 images at batch 128 take 8 steps: a 100-image forget pass (1 step) repeats its phase 8 times, a
    140-image one (2 steps) 4 times; 1,000 images or more, a phase without forget rounds, or the option off: once."""
    from wsscl_core.engine import Phase, Round, cross_entropy_loss
    from wsscl_core.methods import RoundsConfig

    def phase(forget: int, retain_steps: int | None = 3) -> Phase:
        rounds = [Round("forget", torch.arange(forget), cross_entropy_loss, "forget")] if forget else []
        return Phase("p", "p", rounds + [Round("retain", torch.arange(500), cross_entropy_loss, "retain",
                                                max_steps=retain_steps)], epochs=2, lr=0.01, batch_size=128)

    floor, off = RoundsConfig(forget_pass_floor=True), RoundsConfig()
    assert [floor.forget_pass_repeats(phase(n)) for n in (100, 140, 700, 1000, 6000, 0)] == [8, 4, 1, 1, 1, 1]
    assert off.forget_pass_repeats(phase(100)) == 1
    assert [p.epochs for p in floor.round_phases(None, [phase(100), phase(0)])] == [16, 2]


@pytest.mark.parametrize("method, overrides, repeated", [
    ("rl", {"epochs": 1, "lr": 0.01, "batch_size": 128}, ("epochs",)),
    ("cl", {"stage1_epochs": 1, "stage1_lr": 0.02, "stage2_epochs": 1, "stage2_lr": 0.01, "batch_size": 128},
     ("stage1_epochs", "stage2_epochs")),
])
def test_the_forget_pass_floor_runs_a_small_forget_set_as_its_repeated_epochs(ctx_split, method, overrides, repeated):
    """Digits' 140-image forget set is 2 steps at batch 128, so each phase on D_f runs 4 times its epochs:
    step for step the run with those epochs given; and the planned compute counts the repeats."""
    ctx = ctx_split("random:0.1")
    floored = run_unlearning(method, ctx, {**overrides, "forget_pass_floor": True}).model.state_dict()
    given_values = {k: v * 4 if k in repeated else v for k, v in overrides.items()}
    given = run_unlearning(method, ctx, given_values).model.state_dict()
    assert all(torch.allclose(floored[k], given[k], rtol=0, atol=1e-6) for k in given)
    if method == "cl":
        from wsscl_core.methods import planned_cost

        assert planned_cost(method, ctx, make_config(method, {**overrides, "forget_pass_floor": True})) == \
            pytest.approx(planned_cost(method, ctx, make_config(method, given_values)))


def test_a_stop_reaches_the_training_loop(ctx_split):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(RunCancelled):
        run_unlearning("ft", ctx_split("random:0.1", cancel=cancel), {"epochs": 1})


def test_rte_waits_for_the_gpu_before_the_clock_stops(ctx, monkeypatch):
    """On CUDA, kernels run asynchronously: RTE must include a synchronize, or it under-measures. The fake
    synchronize takes 0.5 s, far longer than one FT epoch on digits, and must be inside the RTE."""
    synced = []

    def slow_synchronize(*args) -> None:
        time.sleep(0.5)
        synced.append(True)

    monkeypatch.setattr(UnlearnContext, "device", property(lambda self: torch.device("cuda")))
    monkeypatch.setattr(torch.cuda, "synchronize", slow_synchronize)
    out = run_unlearning("ft", ctx, {"epochs": 1})
    assert synced == [True] and out.seconds >= 0.5


def test_run_unlearning_takes_a_ready_config(ctx):
    config = make_config("ft", {"epochs": 1, "lr": 0.02})
    assert run_unlearning("ft", ctx, config).config is config


# --------------------------------------------------------------------------- configs as the CLI and studio give them

def test_string_overrides_become_the_field_types():
    """The CLI's --set passes strings."""
    config = make_config("cl", {"stage1_epochs": "2", "tau": "0.5", "representation": "features"})
    assert (config.stage1_epochs, config.tau, config.representation) == (2, 0.5, "features")


@pytest.mark.parametrize("method, overrides", [
    ("ft", {"lr": 10.0, "batch_size": 1}), ("iu", {"fisher_samples": 1}), ("cl", {"tau": 0.5, "num_negatives": 1}),
    ("cl", {"stage1_epochs": 0}), ("cl", {"representation": "features"}),
])
def test_bounds_that_are_allowed(method, overrides):
    config = make_config(method, overrides)
    assert all(getattr(config, k) == v for k, v in overrides.items())


@pytest.mark.parametrize("method, overrides, message", [
    ("ft", {"lr": 10.01}, "Learning rate lr must be in"), ("ft", {"batch_size": 0}, "batch_size must be at least 1"),
    ("cl", {"tau": 0.0}, "tau must be positive"), ("cl", {"retain_ratio": 0.0}, "retain_ratio must be positive"),
    ("cl", {"stage1_epochs": 0, "stage2_epochs": 0}, "^Both stages are switched off"),
    ("ft", {"lr": float("inf")}, "lr must be a finite number"), ("ft", {"epochs": 0}, "epochs must be at least 1"),
    ("ft", {"lr": 0.0}, "Learning rate lr must be in"),
    # fields after a text one are still checked
    ("cl", {"batch_size": 0}, "batch_size must be at least 1"), ("cl", {"weight_decay": float("nan")}, "finite"),
])
def test_bounds_that_are_refused(method, overrides, message):
    with pytest.raises(WssclError, match=message):
        make_config(method, overrides)


def test_unknown_names_are_refused_with_the_choices():
    with pytest.raises(WssclError, match="Unknown method 'sideways'; choose one of " + ", ".join(method_names())):
        make_config("sideways")
    with pytest.raises(WssclError, match="FT has no hyperparameter 'momentum'; it has augment_rounds, schedule, epochs, lr, batch_size"):
        make_config("ft", {"momentum": 0.9})
    with pytest.raises(WssclError, match="lr must be a float, got 'fast'"):
        make_config("ft", {"lr": "fast"})
