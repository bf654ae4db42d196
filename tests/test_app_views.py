"""What the studio's views compute: saliency layouts that keep a layer's structure, links, the class-coloured
embedding figure, the gap table, and the shipped Retrain references and original scores (checked against the
shipped model)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from wsscl_core.data import ForgetSpec
from wsscl_core.methods import make_config
from wsscl_core.metrics import METRIC_KEYS
from wsscl_core.saliency import hard_mask, soft_mask
from wsscl_core.studio import plots, references, saliency_view, share
from wsscl_core.studio.embed import Embedding


# --------------------------------------------------------------------------- saliency layouts

def test_a_single_input_conv_layer_is_a_grid_of_its_kernels():
    weights = torch.arange(32 * 9, dtype=torch.float32).view(32, 1, 3, 3)
    layout = saliency_view.layer_layout(weights, "kernels")
    cols = math.ceil(math.sqrt(32))
    assert layout.z.shape == (math.ceil(32 / cols) * 4 - 1, cols * 4 - 1) and layout.square_cells
    for o in (0, 7, 31):
        r, c = divmod(o, cols)
        np.testing.assert_array_equal(layout.z[r * 4:r * 4 + 3, c * 4:c * 4 + 3], weights[o, 0].numpy())
    assert np.isnan(layout.z[3, :]).all()  # a gap between rows of kernels
    assert "32 kernels of 3×3" in layout.note


def test_a_multi_input_conv_layer_keeps_out_and_in_channels():
    weights = torch.randn(64, 32, 3, 3)
    grid = saliency_view.layer_layout(weights, "kernels")
    assert grid.z.shape == (32 * 4 - 1, 32 * 4 - 1) and "output channels 0–31 of 64" in grid.note
    np.testing.assert_array_equal(grid.z[4 * 5:4 * 5 + 3, 4 * 2:4 * 2 + 3], weights[5, 2].numpy())
    matrix = saliency_view.layer_layout(weights, "matrix")
    assert matrix.z.shape == (64, 32 * 10 - 1)
    np.testing.assert_array_equal(matrix.z[7, 10 * 4:10 * 4 + 9], weights[7, 4].flatten().numpy())
    assert np.isnan(matrix.z[:, 9]).all()


def test_linear_and_vector_parameters():
    head = torch.randn(10, 512)
    assert np.array_equal(saliency_view.layer_layout(head).z, head.numpy())
    bias = torch.randn(10)
    assert saliency_view.layer_layout(bias).z.shape == (1, 10)


def test_layer_table_and_agreement_from_real_masks(digits_workspace):
    from wsscl_core.data import make_forget_split
    from wsscl_core.saliency import forget_gradients

    split = make_forget_split(digits_workspace.data.train.labels, ForgetSpec("class", (3,)))
    grads = forget_gradients(digits_workspace.original, digits_workspace.data, split.forget)
    result = saliency_view.masks(grads, 0.5, "global")
    table = saliency_view.layer_table(result)
    assert table["parameters"].sum() == sum(g.numel() for g in grads.values())
    assert table["% of all parameters"].sum() == pytest.approx(100)
    assert table["selected (hard)"].sum() == pytest.approx(0.5 * table["parameters"].sum(), abs=1)
    first = table.index[0]
    hard, soft = result.hard[first], result.soft[first]
    agree = saliency_view.agreement(hard, soft)
    assert agree.selected == int(hard.sum()) and agree.selected + agree.frozen == hard.numel()
    # with the global normalisation the soft mask is a monotone function of |g|, like the hard mask's ranking
    assert agree.mean_soft_selected > agree.mean_soft_frozen
    on_frozen = float(soft[hard == 0].sum() / soft.sum())
    assert agree.soft_share_on_frozen == pytest.approx(on_frozen)


def test_saliency_figure_has_hard_soft_and_their_difference():
    hard = hard_mask({"w": torch.randn(8, 1, 3, 3)}, 0.5)["w"]
    soft = soft_mask({"w": torch.randn(8, 1, 3, 3)}, "global")["w"]
    fig = plots.saliency_layer_figure(saliency_view.layer_layout(hard), saliency_view.layer_layout(soft), "w")
    assert len(fig.data) == 3
    np.testing.assert_allclose(np.asarray(fig.data[2].z, dtype=float),
                               np.asarray(fig.data[0].z, dtype=float) - np.asarray(fig.data[1].z, dtype=float))


# --------------------------------------------------------------------------- links

@pytest.mark.parametrize("spec, method, overrides", [
    # values that differ from the defaults (a link leaves defaults out)
    (ForgetSpec("class", (3,)), "wsscl", {"stage1_epochs": make_config("wsscl", scenario="class").stage1_epochs + 1,
                                          "tau": 1.1}),
    (ForgetSpec("random", fraction=0.1, seed=2), "ft", {"epochs": 4}),
    (ForgetSpec("random", fraction=0.5, seed=0), "salun", {}),
    (ForgetSpec("random", fraction=0.5, seed=1), "rl", {"lr_per_forget_sample": True}),
])
def test_links_round_trip(spec, method, overrides):
    query = share.to_query(spec, method, overrides, "class" if spec.kind == "class" else "random")
    params = {k: v if isinstance(v, list) else [v] for k, v in query.items()}
    state = share.from_query(params, num_classes=10)
    assert not state.problems
    assert state.spec == spec and state.method == method and state.seed == spec.seed
    assert state.overrides == overrides


def test_a_link_cannot_set_what_the_method_cannot_use():
    """FT trains on D_r alone: a link asking for a learning rate per forget sample is reported, not run."""
    state = share.from_query({"forget": ["random:0.1"], "method": ["ft"], "set": ["lr_per_forget_sample=true"]},
                             num_classes=10)
    assert state.overrides == {}
    assert state.problems == ["The link's setting 'lr_per_forget_sample=true' is not a hyperparameter of FT "
                              "(augment_rounds, schedule, epochs, lr, batch_size, weight_decay)."]


def test_a_link_leaves_out_default_values():
    default_epochs = make_config("ft", scenario="random").epochs
    query = share.to_query(ForgetSpec("random", fraction=0.1), "ft", {"epochs": default_epochs, "lr": 0.5}, "random")
    assert query["set"] == ["lr=0.5"]


# --------------------------------------------------------------------------- figures and tables

def test_embedding_points_are_coloured_by_class_and_carry_their_position():
    labels = np.array([0, 0, 1, 1, 2, 2])
    is_forget = np.array([True, True, False, False, False, True])
    coords = {n: np.arange(12, dtype=np.float32).reshape(6, 2) + i for i, n in enumerate(("before", "after"))}
    fig = plots.embedding_figure(Embedding("pca", "before", coords, 0.0), {"before": "Original", "after": "FT"},
                                 labels, is_forget, {"before": labels, "after": labels}, ["a", "b", "c"], selected=4)
    points = [t for t in fig.data if t.x is not None and len(t.x) and t.x[0] is not None and t.name != "selected"]
    for trace in points:
        positions = [int(c[0]) for c in trace.customdata]
        assert {plots.class_colour(int(labels[p])) for p in positions} == {trace.marker.color}
        assert all(is_forget[p] == (trace.marker.symbol == "x") for p in positions)
    assert sorted(int(c[0]) for t in points if t.xaxis == "x" for c in t.customdata) == list(range(6))
    rings = [t for t in fig.data if t.name == "selected"]
    assert len(rings) == 2 and rings[0].x[0] == coords["before"][4, 0] and rings[1].x[0] == coords["after"][4, 0]
    legend = {t.name for t in fig.data if t.showlegend is not False}
    assert {"a", "b", "c"} <= legend  # class "a" is forget-only and still has its legend entry


def test_gap_table_is_signed_and_avg_gap_is_the_mean_distance(digits_workspace):
    from wsscl_core.data import make_forget_split
    from wsscl_core.metrics import evaluate
    from wsscl_core.studio.compare import confusion_differences, gap_table

    split = make_forget_split(digits_workspace.data.train.labels, ForgetSpec("class", (3,)))
    original = evaluate(digits_workspace.original, digits_workspace.data, split)
    other = original
    table = gap_table({"same": other}, original)
    assert (table.loc["same", list(METRIC_KEYS)] == 0).all() and table.loc["same", "Avg.Gap"] == 0
    # a class split: Avg.Gap takes TA on the kept classes
    shifted = type(original)(**{**original.__dict__, "UA": original.UA + 4, "TA": original.TA - 2,
                                "TA_remaining": original.TA_remaining - 2})
    table = gap_table({"shifted": shifted}, original)
    assert table.loc["shifted", "UA"] == 4 and table.loc["shifted", "TA"] == -2
    assert table.loc["shifted", "Avg.Gap"] == pytest.approx(1.5)
    assert (confusion_differences({"same": original}, original)["same"] == 0).all()


def test_empty_cells_show_a_dash():
    table = pd.DataFrame({"Avg.Gap": [np.nan, 1.234], "Loss-attack AUC": [0.5, 0.61234]}, index=["a", "b"])
    shown = plots.table_display(table)
    assert shown.loc["a", "Avg.Gap"] == "—" and shown.loc["b", "Avg.Gap"] == "1.23"
    assert shown.loc["a", "Loss-attack AUC"] == "0.500" and shown.loc["b", "Loss-attack AUC"] == "0.612"


# --------------------------------------------------------------------------- the shipped references

@pytest.fixture(scope="module")
def shipped_workspace():
    from wsscl_core.workspace import open_workspace

    return open_workspace(device="cpu")


def test_every_shipped_reference_belongs_to_the_shipped_model(shipped_workspace):
    refs = references.load_references(shipped_workspace)
    assert refs.note is None
    assert all(refs.has(spec, seed) for spec, seed in references.REFERENCE_REQUESTS)
    assert references.missing_requests(shipped_workspace) == []
    assert references.references_total_bytes() < 5_000_000


def test_a_shipped_reference_scores_as_recorded_from_its_stored_weights(shipped_workspace):
    """The stored scores are those of the stored (float16) model: re-scoring it gives the same numbers."""
    from wsscl_core.runs import score

    spec = ForgetSpec("class", (3,))
    split = references.split_for(shipped_workspace, spec)
    result = references.load_references(shipped_workspace).get(shipped_workspace, split, 0)
    assert result.label == references.SHIPPED_LABEL and result.rte_s > 0
    again = score(shipped_workspace, result.model, split, 0)
    for key, value in result.scores().items():
        assert again.scores()[key] == pytest.approx(value, abs=1e-6), key
    assert result.scores()["UA"] == 100.0  # Retrain never saw the class


def test_the_shipped_original_scores_are_the_shipped_model_scored_now(shipped_workspace):
    """The original's row the studio shows from the shipped file is what scoring the shipped model gives."""
    from wsscl_core.runs import score

    ws = shipped_workspace
    split = references.split_for(ws, ForgetSpec("random", fraction=0.1, seed=1))
    shipped = references.shipped_original_scores(ws, split, 1)
    again = score(ws, ws.original, split, 1)
    for key, value in again.scores().items():
        # The loss AUC ranks 11,000 losses, many of them within float32 rounding of each other near confidence 1,
        # and another CPU's kernels order a few such pairs the other way (2.2e-6 apart on a second machine).
        assert shipped.scores()[key] == pytest.approx(value, abs=1e-5 if key == "MIA_AUC" else 1e-6), key
    np.testing.assert_array_equal(shipped.confusion_test, again.confusion_test)
    assert all(references.shipped_original_scores(ws, references.split_for(ws, spec), seed) is not None
               for spec, seed in references.REFERENCE_REQUESTS)
    assert references.shipped_original_scores(ws, split, 7) is None  # a seed nothing was shipped for


def test_a_changed_model_makes_the_references_ignored_with_a_note(shipped_workspace):
    import copy

    changed = copy.copy(shipped_workspace)
    changed.__dict__.pop("_studio_identity", None)
    changed.original = copy.deepcopy(shipped_workspace.original)
    with torch.no_grad():
        next(changed.original.parameters()).add_(1e-3)
    refs = references.load_references(changed)
    assert not refs.available and "another original model" in refs.note and "original weights" in refs.note
    split = references.split_for(changed, ForgetSpec("class", (3,)))
    assert references.shipped_original_scores(shipped_workspace, split, 0) is not None
    assert references.shipped_original_scores(changed, split, 0) is None


def test_the_forget_neighbourhood_says_which_classes_hold_the_forget_images():
    from wsscl_core.studio.compare import SampleViews, forget_neighbourhood
    from wsscl_core.studio.embed import ModelView

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    centres = np.eye(3) * 10
    before = centres[labels] + rng.normal(size=(120, 3))
    is_forget = labels == 0
    after = before.copy()
    after[is_forget] = centres[2] + rng.normal(size=(40, 3))  # the forgotten class moved onto class 2
    views = {"before": ModelView(before, labels), "after": ModelView(after, labels)}
    sample = SampleViews(np.arange(120), labels, is_forget, views, {"before": "Original", "after": "FT"}, ())
    table = forget_neighbourhood(sample, ["zero", "one", "two"], k=5)
    # class 0 is forgotten whole: no retained image has it, so its images sit among the nearest other class
    assert table.loc["FT", "forget images among their own class (%)"] == 0
    assert table.loc["FT", "the others mostly among"] == "two 100 %"
    partly = is_forget & (np.arange(120) % 2 == 0)  # half of class 0 forgotten: the rest is retained
    sample = SampleViews(np.arange(120), labels, partly, views, {"before": "Original", "after": "FT"}, ())
    table = forget_neighbourhood(sample, ["zero", "one", "two"], k=5)
    assert table.loc["Original", "forget images among their own class (%)"] == 100


def test_cached_loaders_hash_a_workspace_by_its_original(digits, digits_checkpoint, monkeypatch):
    """Two workspaces opened from the same checkpoint share cache entries; a changed original does not."""
    import copy

    from pages import cache
    from wsscl_core.workspace import open_workspace

    calls = []
    real = cache.predict_logits
    monkeypatch.setattr(cache, "predict_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    cache.test_scores.clear()
    first, same = (open_workspace(digits_checkpoint, digits, device="cpu") for _ in range(2))
    changed = copy.copy(first)
    changed.__dict__.pop("_studio_identity", None)
    changed.original = copy.deepcopy(first.original)
    with torch.no_grad():
        next(changed.original.parameters()).mul_(1.5)
    assert cache.test_scores(first) == cache.test_scores(same) and len(calls) == 1
    cache.test_scores(changed)
    assert len(calls) == 2
    cache.test_scores.clear()
