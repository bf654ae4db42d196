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
    """Records calls, so the alignment logic is tested without a minute of numba compilation."""

    fitted: list = []
    transformed: list = []

    def __init__(self, features):
        _FakeUMAP.fitted.append(features)
        self.embedding_ = features[:, :2]

    def transform(self, features):
        _FakeUMAP.transformed.append(features)
        return features[:, :2] + 100


@pytest.fixture()
def fake_umap(monkeypatch):
    monkeypatch.setattr(embed, "_fit_umap", _FakeUMAP)
    monkeypatch.setattr(embed, "_in_worker", lambda fn, *args: fn(*args))


def test_umap_fits_on_before_and_transforms_the_others(fake_umap):
    before, after = np.ones((30, 4)), np.zeros((30, 4))
    result = embed.aligned_embedding({"before": before, "after": after}, projection="umap")
    assert len(_FakeUMAP.fitted) == 1 and np.array_equal(_FakeUMAP.fitted[-1], before)
    assert len(_FakeUMAP.transformed) == 1 and np.array_equal(_FakeUMAP.transformed[-1], after)
    assert result.coords["after"].shape == (30, 2)


def test_wide_features_are_reduced_by_a_pca_fitted_on_before(fake_umap):
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    before, after = (rng.normal(size=(n, 120)).astype(np.float32) for n in (80, 60))
    embed.aligned_embedding({"before": before, "after": after}, projection="umap")
    pca = PCA(n_components=embed.UMAP_INPUT_DIMS, random_state=0).fit(before)
    assert _FakeUMAP.fitted[-1].shape == (80, embed.UMAP_INPUT_DIMS)
    np.testing.assert_allclose(_FakeUMAP.fitted[-1], pca.transform(before), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_FakeUMAP.transformed[-1], pca.transform(after), rtol=1e-4, atol=1e-4)


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
