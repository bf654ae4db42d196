"""Embeddings: the stratified sample, one aligned space fitted on "before", PCA until UMAP is warm."""

import numpy as np
import pytest

from wsscl_core.studio import embed


def test_sample_includes_forget_samples_and_every_class():
    labels = np.repeat(np.arange(10), 500)
    forget = np.flatnonzero(labels == 3)
    index = embed.stratified_sample(labels, forget, max_points=900)
    assert len(index) <= 900 and len(np.unique(index)) == len(index)
    assert np.isin(index, forget).sum() == 300  # a third of the budget
    assert set(np.unique(labels[index])) == set(range(10))
    assert np.array_equal(index, embed.stratified_sample(labels, forget, max_points=900))  # fixed by the seed


def test_small_forget_sets_are_embedded_whole():
    labels = np.repeat(np.arange(5), 40)
    forget = np.array([1, 50, 120])
    index = embed.stratified_sample(labels, forget)
    assert np.isin(forget, index).all() and len(index) == 200


def test_model_view_gives_features_and_predictions(digits_workspace):
    view = embed.model_view(digits_workspace.original, digits_workspace.data.train.images[:50])
    assert view.features.shape[0] == 50 and view.predictions.shape == (50,)


def test_pca_space_is_fitted_on_before_and_shared():
    rng = np.random.default_rng(0)
    before = rng.normal(size=(200, 16))
    result = embed.aligned_embedding({"before": before, "after": before.copy(), "shifted": before + 5},
                                     projection="pca")
    assert result.projection == "pca" and result.reference == "before"
    assert np.allclose(result.coords["after"], result.coords["before"], atol=1e-5)
    assert not np.allclose(result.coords["shifted"], result.coords["before"])


class _FakeUMAP:
    """Records calls, so the alignment logic is tested without numba: fitted on distances, it "embeds"
    each point by its first two distances and transforms by the same rule."""

    fitted: list = []
    transformed: list = []

    def __init__(self, distances):
        _FakeUMAP.fitted.append(distances)
        self.embedding_ = distances[:, :2]

    def transform(self, distances):
        _FakeUMAP.transformed.append(distances)
        return distances[:, :2] + 100


@pytest.fixture()
def fake_umap(monkeypatch):
    _FakeUMAP.fitted, _FakeUMAP.transformed = [], []
    monkeypatch.setattr(embed, "_fit_umap", _FakeUMAP)
    monkeypatch.setattr(embed, "_in_worker", lambda fn, *args: fn(*args))


def test_umap_fits_on_before_distances_and_transforms_the_others(fake_umap):
    from sklearn.metrics import pairwise_distances

    rng = np.random.default_rng(0)
    before, after = rng.normal(size=(30, 4)), rng.normal(size=(20, 4))
    result = embed.aligned_embedding({"before": before, "after": after}, projection="umap")
    (fitted,), (transformed,) = _FakeUMAP.fitted, _FakeUMAP.transformed
    assert fitted.shape == (30, 30) and np.allclose(np.diag(fitted), 0)
    np.testing.assert_allclose(fitted, pairwise_distances(before), atol=1e-5)
    np.testing.assert_allclose(transformed, pairwise_distances(after, before), atol=1e-5)
    assert result.coords["after"].shape == (20, 2)


def test_unchanged_features_sit_exactly_on_the_reference_points(fake_umap):
    before = np.random.default_rng(0).normal(size=(30, 4))
    result = embed.aligned_embedding({"before": before, "after": before.copy()}, projection="umap")
    assert _FakeUMAP.transformed == []
    assert np.array_equal(result.coords["after"], result.coords["before"])


def test_wide_features_are_reduced_by_a_pca_fitted_on_before(fake_umap):
    from sklearn.decomposition import PCA
    from sklearn.metrics import pairwise_distances

    rng = np.random.default_rng(0)
    before, after = (rng.normal(size=(n, 120)).astype(np.float32) for n in (80, 60))
    embed.aligned_embedding({"before": before, "after": after}, projection="umap")
    pca = PCA(n_components=embed.UMAP_INPUT_DIMS, svd_solver="full").fit(before)
    reduced_before, reduced_after = pca.transform(before), pca.transform(after)
    np.testing.assert_allclose(_FakeUMAP.fitted[-1], pairwise_distances(reduced_before), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(_FakeUMAP.transformed[-1], pairwise_distances(reduced_after, reduced_before),
                               rtol=1e-3, atol=1e-3)


def test_a_separately_trained_model_is_aligned_on_retained_rows_only():
    """Retrain's features are the original's in another basis: the map fitted on retain rows recovers the
    original's space for every row, forget rows included."""
    rng = np.random.default_rng(0)
    original = rng.normal(size=(300, 8))
    rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    retrain = original @ rotation * 3.0 + 5.0
    retain_rows = np.arange(60, 300)
    aligned = embed.align_features(retrain, original, retain_rows, ridge=1e-9)
    np.testing.assert_allclose(aligned, original, atol=1e-3)
    # forget rows that the retrain model moved elsewhere keep that move in the original's space
    moved = retrain.copy()
    moved[:60] += 2.0 * rotation[0] * 3.0
    aligned_moved = embed.align_features(moved, original, retain_rows, ridge=1e-9)
    np.testing.assert_allclose(aligned_moved[:60] - original[:60], np.tile([2.0] + [0.0] * 7, (60, 1)), atol=1e-3)


def test_view_features_align_only_the_named_models():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(50, 6)).astype(np.float32)
    views = {"before": embed.ModelView(base, np.zeros(50)), "after": embed.ModelView(base + 1, np.zeros(50)),
             "retrain": embed.ModelView(-base, np.zeros(50))}
    features = embed.view_features(views, np.arange(50), align=("retrain",))
    assert np.array_equal(features["after"], base + 1)
    np.testing.assert_allclose(features["retrain"], base, atol=1e-2)


def test_real_umap_in_the_worker_caches_numba_and_keeps_unchanged_points():
    """The real thing, once, in the worker process (never in this one: numba's threads here would change
    torch's last digits for the tests that follow)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 20)) * 10
    before = (centres[np.repeat(np.arange(3), 60)] + rng.normal(size=(180, 20))).astype(np.float32)
    result = embed.submit_umap({"before": before, "after": before.copy(), "moved": before[:30] + 0.01}).result(300)
    assert result.projection == "umap"
    assert np.array_equal(result.coords["after"], result.coords["before"])
    # points barely moved are placed among their own cluster's points
    cluster_of = np.repeat(np.arange(3), 60)
    centre0 = result.coords["before"][cluster_of == 0].mean(0)
    others = [result.coords["before"][cluster_of == c].mean(0) for c in (1, 2)]
    moved = result.coords["moved"].mean(0)
    assert np.linalg.norm(moved - centre0) < min(np.linalg.norm(moved - o) for o in others)
    # the worker switched numba's disk cache on, and after a fit the cache holds UMAP's layout code
    assert embed._in_worker(embed.numba_cache_state) == {"caching": True, "warm": True}
    assert "numba" not in __import__("sys").modules


def test_projection_follows_warm_up(monkeypatch, fake_umap):
    features = {"before": np.random.default_rng(1).normal(size=(40, 8))}
    monkeypatch.setattr(embed, "_warm", __import__("threading").Event())
    assert embed.aligned_embedding(features).projection == "pca"
    embed._warm.set()
    assert embed.aligned_embedding(features).projection == "umap"


@pytest.mark.parametrize("points", [2, 5])
def test_tiny_inputs_still_project(points):
    features = {"before": np.random.default_rng(0).normal(size=(points, 3))}
    assert embed.aligned_embedding(features, projection="pca").coords["before"].shape == (points, 2)


def test_model_view_predictions_match_the_model(digits_workspace):
    from wsscl_core.metrics import predict_logits

    images = digits_workspace.data.test.images[:64]
    view = embed.model_view(digits_workspace.original, images)
    assert (view.predictions == predict_logits(digits_workspace.original, images).argmax(1).numpy()).all()
    np.testing.assert_allclose(view.probabilities.sum(1), 1, rtol=1e-5)
    assert (view.probabilities.argmax(1) == view.predictions).all()
