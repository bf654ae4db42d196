"""The science of the masks, the engine's masked step and the metrics, against hand-computed values.

Every expected number here comes from the formulas of shared/METHOD.md worked by hand on tiny
tensors (or from a property the formula implies), never from running the library.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsscl_core.data import Dataset, ForgetSpec, ForgetSplit, ImageSet
from wsscl_core.engine import Batch, LossFn, Phase, Round, StepOutput, run_phases, to_float
from wsscl_core.errors import WssclError
from wsscl_core.metrics import (Evaluation, accuracy, confusion_matrix, evaluate, mia_efficacy,
                                per_class_accuracy)
from wsscl_core.saliency import forget_gradients, hard_mask, soft_mask


# --------------------------------------------------------------------------- soft and hard masks

# |2σ(g) − 1| = tanh(|g| / 2): Eq. 4 in a form that needs no sigmoid.
def _eq4(g: float) -> float:
    return math.tanh(abs(g) / 2)


HAND_GRADS = {"a": torch.tensor([1.0, -2.0, 0.0, 4.0]), "b": torch.tensor([[0.5, -0.5], [1.5, -1.0]])}
# mean |g| over all eight entries: (1 + 2 + 0 + 4 + 0.5 + 0.5 + 1.5 + 1) / 8; per tensor: 7/4 and 3.5/4
GLOBAL_MEAN, TENSOR_MEAN = 10.5 / 8, {"a": 7 / 4, "b": 3.5 / 4}


@pytest.mark.parametrize("normalisation, scale_of", [
    ("literal", lambda name: 1.0),
    ("global", lambda name: GLOBAL_MEAN),
    ("per-tensor", lambda name: TENSOR_MEAN[name]),
], ids=["literal", "global", "per-tensor"])
def test_soft_mask_is_eq4_on_the_hand_scaled_gradient(normalisation, scale_of):
    masks = soft_mask(HAND_GRADS, normalisation)
    assert list(masks) == list(HAND_GRADS)
    for name, g in HAND_GRADS.items():
        expected = torch.tensor([_eq4(v / scale_of(name)) for v in g.flatten().tolist()]).view_as(g)
        torch.testing.assert_close(masks[name], expected)


def test_density_soft_mask_is_eq4_scaled_to_mean_one_half_and_clipped_at_one():
    """Literal values 0.1, 0.2, 0.4, 0.8: only the largest clips, so c(0.1 + 0.2 + 0.4) + 1 = 4 · 0.5, c = 1/0.7."""
    literal = torch.tensor([0.1, 0.2, 0.4, 0.8], dtype=torch.float64)
    grads = {"w": (2 * torch.atanh(literal)).float()}  # tanh(|g| / 2) = literal
    torch.testing.assert_close(soft_mask(grads, "density")["w"], torch.tensor([1 / 7, 2 / 7, 4 / 7, 1.0]))


@pytest.mark.parametrize("normalisation", ["literal", "global", "density"])
def test_global_soft_masks_rank_weights_like_the_gradient_magnitude(normalisation):
    """Eq. 4 is increasing in |g|: a larger forget gradient never gets a smaller weight of the step."""
    g = torch.tensor([0.3, -0.01, 2.0, -0.7, 0.05, -4.0, 1.1, 0.0])
    grads = {"first": g[:3], "second": g[3:]}
    mask = torch.cat([m.flatten() for m in soft_mask(grads, normalisation).values()])
    order = g.abs().argsort()
    assert torch.all(mask[order].diff() >= 0) and mask[order[-2]] > mask[order[1]]


# |g| sorted: 4, 2, 1.5, 1, 0.9, 0.5, 0.5, 0 (no ties between the kept and the dropped)
HARD_GRADS = {"a": torch.tensor([1.0, -2.0, 0.0, 4.0]), "b": torch.tensor([[0.5, -0.5], [1.5, -0.9]])}


def test_hard_mask_keeps_the_largest_magnitudes_by_hand():
    """Ratio 0.375 keeps 3 of the 8 weights, the default 0.5 keeps 4, ratio 1 all of them."""
    mask = hard_mask(HARD_GRADS, 0.375)
    assert mask["a"].tolist() == [0.0, 1.0, 0.0, 1.0] and mask["b"].tolist() == [[0.0, 0.0], [1.0, 0.0]]
    mask = hard_mask(HARD_GRADS)
    assert mask["a"].tolist() == [1.0, 1.0, 0.0, 1.0] and mask["b"].tolist() == [[0.0, 0.0], [1.0, 0.0]]
    assert all(torch.all(m == 1) for m in hard_mask(HARD_GRADS, 1.0).values())


def test_density_soft_mask_scales_down_when_eq4_is_already_dense():
    """|g| = 4 and 6: literal values tanh(2) and tanh(3) average above 0.5, so the factor is below 1:
    c = 0.5 / mean(literal), and nothing clips."""
    literal = [math.tanh(2), math.tanh(2), math.tanh(3), math.tanh(3)]
    expected = torch.tensor([v * 0.5 / (sum(literal) / 4) for v in literal])
    torch.testing.assert_close(soft_mask({"w": torch.tensor([4.0, -4.0, 6.0, -6.0])}, "density")["w"], expected)


def _sum_of_batch_mean_gradients(model: nn.Module, data: Dataset, idx: torch.Tensor,
                                 batch: int) -> dict[str, torch.Tensor]:
    """Autograd, batch by batch, in eval mode: the saliency's definition."""
    model = copy.deepcopy(model).eval()
    for start in range(0, len(idx), batch):
        part = idx[start:start + batch]
        F.cross_entropy(model(to_float(data.train.images[part])), data.train.labels[part]).backward()
    return {n: p.grad for n, p in model.named_parameters()}


def test_forget_gradients_sum_the_means_of_batches_of_256_by_default(digits, digits_trained):
    """SalUn's saliency: Σ over batches of 256 of the batch-mean CE gradient; 300 samples make 256 + 44."""
    forget = torch.arange(300)
    expected = _sum_of_batch_mean_gradients(digits_trained[0], digits, forget, 256)
    for name, g in forget_gradients(digits_trained[0], digits, forget).items():
        torch.testing.assert_close(g, expected[name], rtol=1e-4, atol=1e-6)


def test_forget_gradients_refuse_an_empty_forget_set_and_take_a_single_sample(digits, digits_trained):
    with pytest.raises(WssclError, match="^The forget set is empty"):
        forget_gradients(digits_trained[0], digits, torch.arange(0))
    one = torch.tensor([7])
    expected = _sum_of_batch_mean_gradients(digits_trained[0], digits, one, 1)
    for name, g in forget_gradients(digits_trained[0], digits, one).items():
        torch.testing.assert_close(g, expected[name], rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------- the engine's masked SGD step

class _Affine(nn.Module):
    """A 2x3 weight and a bias, driven by a linear loss so each step's gradient is known by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]))
        self.bias = nn.Parameter(torch.tensor([0.3, -0.6]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :3] @ self.weight.T + self.bias


COEFFS = {"weight": torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]), "bias": torch.tensor([-0.5, 2.0])}


def _linear_loss(model: nn.Module, batch: Batch) -> StepOutput:
    """Σ c ⊙ θ: its gradient is c whatever the batch."""
    return StepOutput(sum((p * COEFFS[n]).sum() for n, p in model.named_parameters()))


def _sgd_by_hand(theta: dict[str, torch.Tensor], mask: dict[str, torch.Tensor], lrs: list[float], momentum: float,
                 weight_decay: float, nesterov: bool) -> dict[str, torch.Tensor]:
    """SGD with the mask on the whole update, d = m ⊙ (c + λθ), then momentum, nesterov."""
    theta = {n: t.double().clone() for n, t in theta.items()}
    buf: dict[str, torch.Tensor] = {}
    for lr in lrs:
        d = {n: mask.get(n, 1.0) * (COEFFS[n].double() + weight_decay * theta[n]) for n in theta}
        for n in theta:
            buf[n] = d[n] if n not in buf else momentum * buf[n] + d[n]
            theta[n] = theta[n] - lr * (d[n] + momentum * buf[n] if nesterov else buf[n])
    return theta


MIXED_MASK = {"weight": torch.tensor([[0.0, 0.25, 0.5], [0.75, 1.0, 0.5]]), "bias": torch.tensor([0.5, 0.5])}


@pytest.mark.parametrize("mask, momentum, nesterov, weight_decay, schedule, warmup, lrs", [
    (None, 0.9, False, 0.1, "constant", 0.0, [0.1, 0.1, 0.1]),
    ({"weight": torch.full((2, 3), 0.5), "bias": torch.full((2,), 0.5)}, 0.9, False, 0.1, "constant", 0.0,
     [0.1, 0.1, 0.1]),
    (MIXED_MASK, 0.9, False, 0.1, "constant", 0.0, [0.1, 0.1, 0.1]),
    (MIXED_MASK, 0.8, True, 0.2, "linear", 0.0, [0.1, 0.1 * 2 / 3, 0.1 / 3]),
    ({"weight": MIXED_MASK["weight"]}, 0.0, False, 0.0, "constant", 0.0, [0.1, 0.1, 0.1]),
    (MIXED_MASK, 0.9, False, 0.1, "cosine", 0.5,
     [0.0, 0.1 / 3 / 0.5, 0.1 * 0.5 * (1 + math.cos(2 * math.pi / 3))]),
    (MIXED_MASK, 0.9, False, 0.1, "cosine", 0.25, [0.0] + [0.1 * 0.5 * (1 + math.cos(math.pi * k / 4))
                                                       for k in (1, 2, 3)]),
    (MIXED_MASK, 0.0, True, 0.1, "constant", 0.0, [0.1, 0.1, 0.1]),
], ids=["unmasked", "half-mask", "mixed-mask", "nesterov-linear", "partial-mask", "warmup-cosine",
        "warmup-ends-on-a-step", "nesterov-without-momentum"])
def test_masked_sgd_steps_match_the_hand_computed_trajectory(digits, mask, momentum, nesterov, weight_decay,
                                                              schedule, warmup, lrs):
    """A few steps of the engine against SGD worked by hand: the mask scales gradient *and* weight decay
    before momentum (a 0.5 mask gives exactly half the unmasked update), a weight left out of the mask
    dict is unmasked, the learning rate follows the schedule (warm-up ends at t = warmup_fraction), and
    nesterov without momentum is plain SGD."""
    model = _Affine()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    phase = Phase("p", "Hand", [Round("r", torch.arange(2 * len(lrs)), _linear_loss, augment=False)], epochs=1, lr=0.1,
                  batch_size=2, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, schedule=schedule,
                  warmup_fraction=warmup, mask=mask)
    run_phases(model, digits, [phase])
    expected = _sgd_by_hand(start, mask or {}, lrs, momentum, weight_decay, nesterov)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach().double(), expected[name], rtol=1e-5, atol=1e-6)


def test_a_half_mask_moves_every_weight_by_half_the_unmasked_step(digits):
    """One step with momentum and weight decay: θ1 − θ0 under mask 0.5 is exactly half of the unmasked one."""
    def one_step(mask: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        model = _Affine()
        start = {n: p.detach().clone() for n, p in model.named_parameters()}
        run_phases(model, digits, [Phase("p", "One", [Round("r", torch.arange(2), _linear_loss)], epochs=1, lr=0.1,
                                         batch_size=2, momentum=0.9, weight_decay=0.5, mask=mask)])
        return {n: p.detach() - start[n] for n, p in model.named_parameters()}

    full = one_step(None)
    half = one_step({n: torch.full_like(c, 0.5) for n, c in COEFFS.items()})
    for name in full:
        torch.testing.assert_close(half[name], full[name] / 2)
        assert torch.all(full[name] != 0)


def test_a_weight_without_a_gradient_in_a_step_is_left_alone(digits):
    """A round whose loss ignores the bias: that step neither decays it nor continues its momentum."""
    def weight_only(model: nn.Module, batch: Batch) -> StepOutput:
        return StepOutput((model.weight * COEFFS["weight"]).sum())

    model = _Affine()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    run_phases(model, digits, [Phase("p", "Two rounds", [
        Round("both", torch.arange(2), _linear_loss, augment=False),
        Round("weight", torch.arange(2), weight_only, augment=False)], epochs=1, lr=0.1, batch_size=2, momentum=0.9,
        weight_decay=0.1)])
    two_steps = _sgd_by_hand(start, {}, [0.1, 0.1], 0.9, 0.1, False)
    one_step = _sgd_by_hand(start, {}, [0.1], 0.9, 0.1, False)
    torch.testing.assert_close(model.weight.detach().double(), two_steps["weight"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.bias.detach().double(), one_step["bias"], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- augmentation in the loop

def _is_shifted_copy(out: torch.Tensor, image: torch.Tensor, padding: int) -> bool:
    """``out`` is a crop of ``image`` zero-padded by ``padding`` (no flip)."""
    h, w = image.shape[-2:]
    padded = F.pad(image, (padding,) * 4)
    return any(torch.equal(out, padded[..., dy:dy + h, dx:dx + w])
               for dy in range(2 * padding + 1) for dx in range(2 * padding + 1))


def test_engine_augments_exactly_the_rounds_that_ask_for_it(digits):
    """digits: one pixel of padding, no flip. An augmented round sees shifted copies, a plain one the images."""
    seen: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]] = {"aug": [], "plain": []}

    def recorder(key: str) -> LossFn:
        def loss(model: nn.Module, batch: Batch) -> StepOutput:
            seen[key].append((batch.index.clone(), batch.x.detach().clone(), None if batch.x_view is None else
                              batch.x_view.detach().clone()))
            return StepOutput(sum(p.sum() for p in model.parameters()) * 0)
        return loss

    model = _Affine()
    run_phases(model, digits, [Phase("p", "Views", [
        Round("aug", torch.arange(64), recorder("aug"), two_views=True),
        Round("plain", torch.arange(64, 128), recorder("plain"), augment=False)], epochs=1, lr=0.1, batch_size=64)])
    (idx, x, view), = seen["aug"]
    raw = to_float(digits.train.images[idx])
    assert not torch.equal(x, raw) and not torch.equal(view, raw) and not torch.equal(x, view)
    assert all(_is_shifted_copy(x[i], raw[i], 1) and _is_shifted_copy(view[i], raw[i], 1) for i in range(len(raw)))
    (idx, x, view), = seen["plain"]
    assert view is None and torch.equal(x, to_float(digits.train.images[idx]))


# --------------------------------------------------------------------------- evaluate on chosen logits

class _LookupModel(nn.Module):
    """Returns the chosen logits of each image; an image's one pixel is its id (0..254)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(logits, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[(x[:, 0, 0, 0] * 255).round().long()]


def _logits(label: int, confidence: float, correct: bool) -> list[float]:
    """Three-class logits with p(label) = confidence, predicted class = label iff ``correct``.

    Correct: the other two share 1 − p (needs p > 1/3). Wrong: 90 % of 1 − p on one other class (needs p < 0.47).
    """
    others = [c for c in range(3) if c != label]
    probs = [0.0] * 3
    probs[label] = confidence
    probs[others[0]], probs[others[1]] = ((1 - confidence) / 2,) * 2 if correct else (0.9 * (1 - confidence),
                                                                                       0.1 * (1 - confidence))
    return [math.log(p) for p in probs]


def _hand_built_evaluation_case():
    """(model, dataset, forget indices) whose metrics are known by construction.

    Train: 10 forget samples, all of class 2 (3 sure and right, 3 unsure and right, 4 wrong: UA 40);
    100 retain samples of classes 0/1 (90 right at confidence 0.95-0.99, 10 wrong at 0.10-0.20: RA 90).
    Test: 80 of classes 0/1 (60 right at 0.55-0.65, 20 wrong) and 20 of class 2 (10 right, 10 wrong):
    TA 70, 75 on the kept classes. The SVC sees members near 0.97 (and 10 at ~0.15), non-members near 0.6
    and 30 at ~0.15: it calls ~0.97 member and the rest non-member, so 7 of 10 forget samples are
    non-members: MIA 70. Swap the two shadow sets and it would be 30.
    """
    rng = np.random.default_rng(0)
    rows: list[tuple[int, list[float]]] = []  # (label, logits) in id order: forget, retain, test
    rows += [(2, _logits(2, 0.97, True))] * 3 + [(2, _logits(2, 0.60, True))] * 3 + [(2, _logits(2, 0.15, False))] * 4
    rows += [(i % 2, _logits(i % 2, rng.uniform(0.95, 0.99), True)) for i in range(90)]
    rows += [(i % 2, _logits(i % 2, rng.uniform(0.10, 0.20), False)) for i in range(10)]
    rows += [(i % 2, _logits(i % 2, rng.uniform(0.55, 0.65), True)) for i in range(60)]
    rows += [(i % 2, _logits(i % 2, rng.uniform(0.10, 0.20), False)) for i in range(20)]
    rows += [(2, _logits(2, rng.uniform(0.55, 0.65), True)) for _ in range(10)]
    rows += [(2, _logits(2, rng.uniform(0.10, 0.20), False)) for _ in range(10)]
    labels = torch.tensor([label for label, _ in rows])
    ids = torch.arange(len(rows), dtype=torch.uint8).view(-1, 1, 1, 1)
    data = Dataset("hand", ImageSet(ids[:110], labels[:110]), ImageSet(ids[110:], labels[110:]), ["0", "1", "2"])
    model = _LookupModel(torch.tensor([logits for _, logits in rows]))
    return model, data


@pytest.mark.parametrize("spec, removed, ta_remaining", [
    (ForgetSpec("random", fraction=10 / 110), (), None),
    (ForgetSpec("class", classes=(2,)), (2,), 75.0),
])
def test_evaluate_gives_the_metrics_of_hand_built_logits(spec, removed, ta_remaining):
    model, data = _hand_built_evaluation_case()
    split = ForgetSplit(spec, torch.arange(10), torch.arange(10, 110), removed)
    ev = evaluate(model, data, split)
    assert (ev.UA, ev.RA, ev.TA, ev.MIA) == pytest.approx((40.0, 90.0, 70.0, 70.0))
    assert ev.TA_remaining == (None if ta_remaining is None else pytest.approx(ta_remaining))
    np.testing.assert_allclose(ev.conf_forget, [0.97] * 3 + [0.60] * 3 + [0.15] * 4, rtol=1e-5)
    # test rows: class 0/1 alternate; a wrong 0 goes to class 1 (90 % of the rest), a wrong 1 to class 0,
    # a wrong 2 to class 0
    assert ev.confusion_test.tolist() == [[30, 10, 0], [10, 30, 0], [10, 0, 10]]
    assert ev.per_class_test.tolist() == pytest.approx([75.0, 75.0, 50.0])


def test_evaluate_scores_a_fixed_subset_of_the_retain_set_when_asked():
    """A seeded subset of the asked size, the same for the same seed; a cap of at least |D_r| scores all, in order."""
    model, data = _hand_built_evaluation_case()
    split = ForgetSplit(ForgetSpec("random", fraction=0.1), torch.arange(10), torch.arange(10, 110))
    ev = evaluate(model, data, split, max_retain_eval=40, seed=3)
    assert len(ev.conf_retain) == 40
    assert np.array_equal(ev.conf_retain, evaluate(model, data, split, max_retain_eval=40, seed=3).conf_retain)
    retained = torch.tensor(ev.conf_retain)[:, None]
    every_retain = evaluate(model, data, split).conf_retain
    assert torch.all((retained - torch.tensor(every_retain)[None]).abs().min(1).values < 1e-6)
    assert ev.RA == pytest.approx(100.0 * float((retained > 0.5).float().mean()))
    assert np.array_equal(evaluate(model, data, split, max_retain_eval=100, seed=3).conf_retain, every_retain)


def test_scores_and_summary_carry_the_hand_built_metrics():
    model, data = _hand_built_evaluation_case()
    by_class = evaluate(model, data, ForgetSplit(ForgetSpec("class", classes=(2,)), torch.arange(10),
                                                  torch.arange(10, 110), (2,)))
    scores = by_class.scores()
    assert {k: v for k, v in scores.items() if k != "MIA_AUC"} == pytest.approx(
        {"UA": 40.0, "RA": 90.0, "TA": 70.0, "MIA": 70.0, "TA_remaining": 75.0})
    # the loss-threshold AUC by pair counting: P(forget loss < test loss), ties counted half
    loss_f, loss_t = -np.log(by_class.conf_forget)[:, None], -np.log(by_class.conf_test)[None, :]
    assert scores["MIA_AUC"] == pytest.approx(float(np.mean((loss_f < loss_t) + 0.5 * (loss_f == loss_t))))
    summary = by_class.to_dict()
    assert summary["forget_classes"] == [2] and summary["confusion_test"] == [[30, 10, 0], [10, 30, 0], [10, 0, 10]]
    assert summary["per_class_test"] == pytest.approx([75.0, 75.0, 50.0])
    assert {k: summary[k] for k in ("UA", "RA", "TA", "MIA", "MIA_AUC", "TA_remaining")} == by_class.scores()
    at_random = evaluate(model, data, ForgetSplit(ForgetSpec("random", fraction=0.1), torch.arange(10),
                                                   torch.arange(10, 110)))
    assert at_random.forget_classes == () and set(at_random.scores()) == {"UA", "RA", "TA", "MIA", "MIA_AUC"}


def test_a_class_without_test_samples_has_no_accuracy_and_no_summary_value():
    cm = confusion_matrix(torch.eye(3)[[0, 1, 1]], torch.tensor([0, 0, 1]), 3)  # class 2 neither true nor predicted
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    per_class = per_class_accuracy(cm)
    assert per_class[:2].tolist() == [50.0, 100.0] and np.isnan(per_class[2])
    ev = Evaluation(1.0, 2.0, 3.0, 4.0, cm, per_class, np.zeros(1), np.zeros(1), np.zeros(1))
    assert ev.to_dict()["per_class_test"] == [50.0, 100.0, None]


def test_accuracy_of_one_sample_and_of_none():
    assert accuracy(torch.tensor([[0.0, 1.0]]), torch.tensor([1])) == 100.0
    assert accuracy(torch.tensor([[0.0, 1.0]]), torch.tensor([0])) == 0.0
    assert math.isnan(accuracy(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)))


class _RecordingSVC:
    """Stands in for sklearn's SVC: records its settings and training set; calls p > 0.5 a member."""

    made: list["_RecordingSVC"] = []

    def __init__(self, **settings) -> None:
        self.settings = settings
        _RecordingSVC.made.append(self)

    def fit(self, x: np.ndarray, y: np.ndarray) -> "_RecordingSVC":
        self.x, self.y = x, y
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (x[:, 0] > 0.5).astype(float)


@pytest.fixture()
def recording_svc(monkeypatch):
    import sklearn.svm

    _RecordingSVC.made = []
    monkeypatch.setattr(sklearn.svm, "SVC", _RecordingSVC)
    return _RecordingSVC.made


def test_mia_trains_salun_s_svc_on_at_most_10000_members_and_non_members(recording_svc):
    """SVC(C=3, gamma='auto', rbf) on 10,000 distinct retain (member) and 10,000 distinct test (non-member)
    confidences; MIA = % of forget samples it calls non-member; the sample depends on the seed only."""
    rng = np.random.default_rng(0)
    retain, test = rng.permutation(10_005) / 10_005, -rng.permutation(10_003) / 10_003
    assert mia_efficacy(retain, test, np.array([0.9, 0.2, 0.3, 0.95])) == 50.0
    svc = recording_svc[-1]
    assert svc.settings == {"C": 3, "gamma": "auto", "kernel": "rbf"}
    assert svc.x.shape == (20_000, 1) and svc.y.tolist() == [1.0] * 10_000 + [0.0] * 10_000
    members, non_members = svc.x[:10_000, 0], svc.x[10_000:, 0]
    assert len(np.unique(members)) == 10_000 and np.isin(members, retain).all()
    assert len(np.unique(non_members)) == 10_000 and np.isin(non_members, test).all()
    mia_efficacy(retain, test, np.zeros(1), seed=0)
    mia_efficacy(retain, test, np.zeros(1), seed=1)
    assert np.array_equal(recording_svc[-2].x, svc.x) and not np.array_equal(recording_svc[-1].x, svc.x)


def test_evaluate_passes_its_seed_to_the_mia(recording_svc):
    model, data = _hand_built_evaluation_case()
    split = ForgetSplit(ForgetSpec("random", fraction=0.1), torch.arange(10), torch.arange(10, 110))
    default, seed0, seed3 = (evaluate(model, data, split, **kw) for kw in ({}, {"seed": 0}, {"seed": 3}))
    mia_efficacy(seed3.conf_retain, seed3.conf_test, seed3.conf_forget, seed=3)
    fitted = [svc.x for svc in recording_svc]
    assert np.array_equal(fitted[0], fitted[1]) and np.array_equal(fitted[2], fitted[3])
    assert not np.array_equal(fitted[0], fitted[2])
