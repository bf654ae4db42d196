import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsscl_core.data import ForgetSpec, make_forget_split
from wsscl_core.engine import to_float
from wsscl_core.errors import WssclError
from wsscl_core.saliency import (DEFAULT_SOFT_NORMALISATION, GRADIENT_CHUNK, SOFT_NORMALISATIONS, compute_saliency,
                                 forget_gradients, hard_mask, layer_summaries, soft_mask)


@pytest.fixture(scope="module")
def split(digits):
    return make_forget_split(digits.train.labels, ForgetSpec.parse("random:0.1", 0), digits.num_classes)


@pytest.fixture(scope="module")
def grads(digits_trained, digits, split):
    return forget_gradients(digits_trained[0], digits, split.forget)


def _assert_sum_of_batch_means(grads, model, digits, forget, batch_size):
    """``grads`` equals the sum over batches of the batch-mean cross-entropy gradient, by autograd."""
    model.zero_grad(set_to_none=True)
    for start in range(0, len(forget), batch_size):
        idx = forget[start:start + batch_size]
        F.cross_entropy(model(to_float(digits.train.images[idx])), digits.train.labels[idx]).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-6)
    model.zero_grad(set_to_none=True)


def test_forget_gradients_sum_batch_means_and_leave_the_model_alone(trained_copy, digits, split):
    model = trained_copy.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = forget_gradients(model, digits, split.forget, batch_size=100)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())

    _assert_sum_of_batch_means(grads, model.eval(), digits, split.forget, 100)


def test_forget_gradients_report_each_batch_with_its_forget_loss(digits_trained, digits, split):
    model = digits_trained[0]
    events = []
    forget_gradients(model, digits, split.forget, batch_size=64, on_progress=events.append)
    assert len(events) == -(-split.num_forget // 64)
    assert [e.step for e in events] == list(range(1, len(events) + 1)) and events[-1].fraction_done == 1.0
    first = split.forget[:64]
    with torch.no_grad():
        ce = F.cross_entropy(model.eval()(to_float(digits.train.images[first])), digits.train.labels[first])
    assert events[0].kind == "step" and events[0].phase == "saliency"
    assert events[0].losses["ce"] == pytest.approx(float(ce), rel=1e-4)


def test_large_batches_report_every_chunk_and_keep_the_batch_mean(digits_trained, digits, split):
    """A 256-sample batch is computed in chunks: progress comes early, the gradient is still the batch mean's."""
    model = digits_trained[0]
    events = []
    chunked = forget_gradients(model, digits, split.forget, batch_size=256, on_progress=events.append)
    assert len(events) == -(-split.num_forget // GRADIENT_CHUNK) > -(-split.num_forget // 256)
    first = split.forget[:GRADIENT_CHUNK]
    with torch.no_grad():
        ce = F.cross_entropy(model.eval()(to_float(digits.train.images[first])), digits.train.labels[first])
    assert events[0].losses["ce"] == pytest.approx(float(ce), rel=1e-4)
    _assert_sum_of_batch_means(chunked, model.eval(), digits, split.forget, 256)


@pytest.mark.parametrize("ratio", [0.5, 0.2])
def test_hard_mask_keeps_the_global_top_fraction(grads, ratio):
    mask = hard_mask(grads, ratio)
    assert {n: m.shape for n, m in mask.items()} == {n: g.shape for n, g in grads.items()}
    flat_mask = torch.cat([m.flatten() for m in mask.values()])
    flat_abs = torch.cat([g.abs().flatten() for g in grads.values()])
    assert set(flat_mask.unique().tolist()) <= {0.0, 1.0}
    assert int(flat_mask.sum()) == round(ratio * flat_mask.numel())
    assert flat_abs[flat_mask == 1].min() >= flat_abs[flat_mask == 0].max()


def test_hard_mask_rejects_a_bad_ratio(grads):
    with pytest.raises(WssclError, match="ratio"):
        hard_mask(grads, 1.5)


def test_literal_soft_mask_is_eq4():
    g = {"w": torch.tensor([[-2.0, 0.0], [0.5, 3.0]])}
    expected = torch.tensor([[abs(2 / (1 + np.exp(2.0)) - 1), 0.0],
                             [abs(2 / (1 + np.exp(-0.5)) - 1), abs(2 / (1 + np.exp(-3.0)) - 1)]], dtype=torch.float32)
    torch.testing.assert_close(soft_mask(g, "literal")["w"], expected)


@pytest.mark.parametrize("normalisation", sorted(SOFT_NORMALISATIONS))
def test_soft_masks_are_in_unit_range_with_the_gradient_shapes(grads, normalisation):
    """Eq. 4, |2σ(g/c) − 1| = tanh(|g| / 2c), on the real saliency: c = 1 (literal), the mean |g| over all
    weights (global) or of the tensor (per-tensor); density is the literal mask times one factor, clipped
    at 1, with mean 0.5."""
    mask = soft_mask(grads, normalisation)
    assert {n: m.shape for n, m in mask.items()} == {n: g.shape for n, g in grads.items()}
    flat = torch.cat([m.flatten() for m in mask.values()])
    assert float(flat.min()) >= 0.0 and float(flat.max()) <= 1.0
    overall = float(torch.cat([g.abs().flatten() for g in grads.values()]).mean())
    if normalisation == "density":
        literal = torch.cat([(2 * torch.sigmoid(g.flatten()) - 1).abs() for g in grads.values()])  # Eq. 4 as written
        unclipped = (flat < 1) & (literal > 0)
        factor = flat[unclipped] / literal[unclipped]
        torch.testing.assert_close(factor, torch.full_like(factor, float(factor.median())), rtol=1e-4, atol=0)
        assert torch.all(literal[flat == 1] * float(factor.median()) >= 1 - 1e-4)
        assert float(flat.mean()) == pytest.approx(0.5, abs=1e-3)
        return
    for name, g in grads.items():
        scale = {"literal": 1.0, "global": overall, "per-tensor": float(g.abs().mean())}[normalisation]
        torch.testing.assert_close(mask[name], torch.tanh(g.abs() / (2 * scale)), msg=name)


def test_normalised_soft_masks_fix_the_vanishing_literal_mask(grads):
    """Literal Eq. 4 is near zero on a trained net; the global mask gives a weight with the mean |g|
    tanh(1/2) ≈ 0.46 and orders all weights like |g|."""
    mean = {n: float(torch.cat([m.flatten() for m in soft_mask(grads, n).values()]).mean())
            for n in SOFT_NORMALISATIONS}
    assert mean["density"] == pytest.approx(0.5, abs=1e-3)
    assert mean["literal"] < 0.05 < mean["global"]
    magnitude = torch.cat([g.abs().flatten() for g in grads.values()])
    mask = torch.cat([m.flatten() for m in soft_mask(grads, "global").values()])
    assert torch.all(mask[magnitude.argsort()].diff() >= -1e-6)  # up to float32 rounding of σ
    typical = (magnitude - magnitude.mean()).abs().argmin()
    assert float(mask[typical]) == pytest.approx(np.tanh(0.5), abs=1e-3)
    assert float(mask.max() - mask.min()) > 0.5


def test_soft_mask_rejects_an_unknown_normalisation(grads):
    with pytest.raises(WssclError, match="normalisation"):
        soft_mask(grads, "sideways")


def test_layer_summaries_shapes_and_densities(grads):
    hard, soft = hard_mask(grads, 0.5), soft_mask(grads, "literal")
    layers = {layer.name: layer for layer in layer_summaries(hard, soft, max_side=16)}
    assert list(layers) == list(grads)
    conv = layers["body.2.0.weight"]  # (64, 32, 3, 3): out x in, pooled to 16 x 16
    assert conv.heatmap_hard.shape == (16, 16) and conv.heatmap_soft.shape == (16, 16)
    assert layers["head.weight"].heatmap_soft.shape == (10, 16)
    assert layers["head.bias"].heatmap_hard.shape == (1, 10)
    for name, layer in layers.items():
        assert layer.shape == tuple(grads[name].shape)
        assert layer.fraction_selected == pytest.approx(float(hard[name].mean()))
        assert layer.mean_soft == pytest.approx(float(soft[name].mean()), rel=1e-5)
        assert layer.heatmap_hard.ndim == 2 and 0 <= layer.heatmap_hard.min() <= layer.heatmap_hard.max() <= 1


def test_compute_saliency_bundles_everything(digits_trained, digits, split):
    result = compute_saliency(digits_trained[0], digits, split, ratio=0.3, normalisation="per-tensor")
    names = [n for n, _ in digits_trained[0].named_parameters()]
    assert list(result.grads) == list(result.hard) == list(result.soft) == names
    assert [layer.name for layer in result.layers] == names
    density = torch.cat([m.flatten() for m in result.hard.values()]).mean()
    assert float(density) == pytest.approx(0.3, abs=1e-4)
    for name, soft in soft_mask(result.grads, "per-tensor").items():
        torch.testing.assert_close(result.soft[name], soft)
    defaults = compute_saliency(digits_trained[0], digits, split)
    assert float(torch.cat([m.flatten() for m in defaults.hard.values()]).mean()) == pytest.approx(0.5, abs=1e-4)
    for name, soft in soft_mask(defaults.grads, DEFAULT_SOFT_NORMALISATION).items():
        torch.testing.assert_close(defaults.soft[name], soft)
