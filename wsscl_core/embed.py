"""2-D views of penultimate features: one space for every model, fitted on the original ("before").

UMAP is fitted on the original model's features and the other models' features are
*transformed* into that space, so positions are comparable across panels. UMAP's first fit in
a process spends about a minute compiling (numba); :func:`start_warm_up` pays that at start-up
in a separate worker process (which then does every UMAP fit), and until it is done
:func:`aligned_embedding` uses PCA.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch

from .metrics import predict_features
from .models import Classifier

MAX_POINTS = 2000
Projection = Literal["umap", "pca"]


def stratified_sample(labels: torch.Tensor | np.ndarray, forget: torch.Tensor | np.ndarray,
                      max_points: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """Sorted train indices to embed: forget samples (up to a third of the budget), the rest
    spread evenly over the classes of the retain set."""
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    forget = np.asarray(forget.cpu() if isinstance(forget, torch.Tensor) else forget)
    rng = np.random.default_rng(seed)
    n_forget = min(len(forget), max(1, max_points // 3))
    chosen = [rng.choice(forget, n_forget, replace=False)] if len(forget) else []
    retain_mask = np.ones(len(labels), dtype=bool)
    retain_mask[forget] = False
    retain = np.flatnonzero(retain_mask)
    classes = np.unique(labels[retain])
    per_class = max(1, (max_points - n_forget) // max(len(classes), 1))
    for c in classes:
        members = retain[labels[retain] == c]
        chosen.append(rng.choice(members, min(per_class, len(members)), replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


@dataclass
class ModelView:
    """What a model says about the sampled images: features and predicted classes."""

    features: np.ndarray
    predictions: np.ndarray


def model_view(model: Classifier, images: torch.Tensor) -> ModelView:
    """Penultimate features and predictions of ``model`` on ``images`` (uint8, any device)."""
    features = predict_features(model, images)
    head = model.output_layer()
    with torch.no_grad():  # the head on the features: one forward pass instead of two
        predictions = head(features.to(next(head.parameters()).device)).argmax(1).cpu()
    return ModelView(features.numpy(), predictions.numpy())


@dataclass
class Embedding:
    """2-D coordinates per model name, all in the space fitted on ``reference``."""

    projection: Projection
    reference: str
    coords: dict[str, np.ndarray]
    seconds: float


_warm = threading.Event()
_pool_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
warm_up_seconds: float | None = None


def _fit_umap(features: np.ndarray):
    import umap

    n_neighbors = int(min(15, max(2, len(features) - 1)))
    # 200 layout epochs instead of 500: the picture is settled by then and the fit takes ~2.5x less time.
    return umap.UMAP(n_neighbors=n_neighbors, min_dist=0.1, n_epochs=200, random_state=0, n_jobs=1).fit(features)


def warm_up() -> float:
    """Compile UMAP's numba code (fit and transform) on random data; returns the seconds it took."""
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    reducer = _fit_umap(rng.normal(size=(300, 16)).astype(np.float32))
    reducer.transform(rng.normal(size=(50, 16)).astype(np.float32))
    return time.perf_counter() - start


def _umap_coords(features: dict[str, np.ndarray], reference: str) -> dict[str, np.ndarray]:
    reducer = _fit_umap(features[reference])
    coords = {reference: reducer.embedding_}
    coords.update({name: reducer.transform(f) for name, f in features.items() if name != reference})
    return coords


def _worker() -> ProcessPoolExecutor:
    """One UMAP process for the whole app. Numba compilation holds the GIL for about a minute, so it
    must not share a process with training threads; later fits reuse the compiled code."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return _pool


def _in_worker(fn: Callable, *args):
    return _worker().submit(fn, *args).result()


def start_warm_up() -> None:
    """Compile UMAP in the worker process in the background; :func:`umap_ready` turns True when done."""

    def finished(future: Future) -> None:
        global warm_up_seconds
        if future.exception() is None:
            warm_up_seconds = future.result()
            _warm.set()

    with _pool_lock:
        started = _pool is not None
    if not started:
        _worker().submit(warm_up).add_done_callback(finished)


def umap_ready() -> bool:
    return _warm.is_set()


def aligned_embedding(features: dict[str, np.ndarray], reference: str = "before",
                      projection: Projection | None = None) -> Embedding:
    """Fit on ``features[reference]``, transform every other entry into the same 2-D space.

    ``projection`` None means UMAP once warm-up has finished, PCA until then.
    """
    projection = projection or ("umap" if umap_ready() else "pca")
    start = time.perf_counter()
    features = {name: f.astype(np.float32) for name, f in features.items()}
    if projection == "umap":
        coords = _in_worker(_umap_coords, features, reference)
    else:
        from sklearn.decomposition import PCA

        reducer = PCA(n_components=2, random_state=0).fit(features[reference])
        coords = {name: reducer.transform(f) for name, f in features.items()}
    return Embedding(projection, reference, {k: np.asarray(v, dtype=np.float32) for k, v in coords.items()},
                     time.perf_counter() - start)
