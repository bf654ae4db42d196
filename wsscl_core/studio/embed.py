"""2-D views of penultimate features: one space for every model, fitted on the original ("before").

UMAP is fitted on the original model's features and the other models' features are
*transformed* into that space, so positions are comparable across panels. UMAP's first fit in
a process spends about a minute compiling (numba); :func:`start_warm_up` pays that at start-up
in a separate worker process (which then does every UMAP fit), and until it is done
:func:`aligned_embedding` uses PCA.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch

from ..metrics import predict_features
from ..models import Classifier

MAX_POINTS = 2000
WORKER_NICENESS = 10
UMAP_INPUT_DIMS = 50
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
warm_up_seconds: float | None = None


def _fit_umap(features: np.ndarray):
    import umap

    n_neighbors = int(min(15, max(2, len(features) - 1)))
    # 200 layout epochs instead of 500: the picture is settled by then and the fit takes ~2.5x less time.
    # The approximate neighbour search: below 4,096 points umap-learn otherwise computes exact distances
    # by calling its metric from Python for every pair (measured: 20 s instead of 2 s for 2,000 points).
    return umap.UMAP(n_neighbors=n_neighbors, min_dist=0.1, n_epochs=200, random_state=0, n_jobs=1,
                     force_approximation_algorithm=True).fit(features)


def warm_up() -> float:
    """Compile UMAP's numba code on random data shaped like a real view (fit on MAX_POINTS points of
    UMAP_INPUT_DIMS dimensions, then a transform): a smaller warm-up leaves code paths uncompiled."""
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    _umap_coords({"before": rng.normal(size=(MAX_POINTS, UMAP_INPUT_DIMS)).astype(np.float32),
                  "after": rng.normal(size=(MAX_POINTS // 4, UMAP_INPUT_DIMS)).astype(np.float32)}, "before")
    return time.perf_counter() - start


def _umap_coords(features: dict[str, np.ndarray], reference: str) -> dict[str, np.ndarray]:
    """UMAP fitted on the reference, the others transformed into it; features wider than
    ``UMAP_INPUT_DIMS`` are first projected by a PCA fitted on the reference (usual UMAP practice:
    the neighbour search on 50 dimensions instead of 512 is what makes the fit fast)."""
    if features[reference].shape[1] > UMAP_INPUT_DIMS:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=UMAP_INPUT_DIMS, random_state=0).fit(features[reference])
        features = {name: pca.transform(f).astype(np.float32) for name, f in features.items()}
    reducer = _fit_umap(features[reference])
    coords = {reference: reducer.embedding_}
    coords.update({name: reducer.transform(f) for name, f in features.items() if name != reference})
    return coords


def _serve(tasks: multiprocessing.Queue, results: multiprocessing.Queue) -> None:
    """The worker process's loop: run each ``(fn, args)`` and send back ``(ok, value or message)``."""
    os.nice(WORKER_NICENESS)
    while True:
        fn, args = tasks.get()
        try:
            results.put((True, fn(*args)))
        except Exception as exc:  # reported to the caller, which raises it in the app
            results.put((False, f"{type(exc).__name__}: {exc}"))


class _Worker:
    """One UMAP process for the whole app, used by one caller at a time.

    Numba compilation holds the GIL for about a minute, so it must not share a process with
    training threads; later fits reuse the compiled code. The process runs at a lower CPU
    priority (nice +10) so that, on a small machine, its warm-up takes the cores only when the
    live run and the pages leave them idle; it is a daemon, so stopping the app ends it at once.
    """

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._tasks, self._results = context.Queue(), context.Queue()
        self._process = context.Process(target=_serve, args=(self._tasks, self._results), daemon=True,
                                        name="wsscl-umap")
        self._process.start()
        self._lock = threading.Lock()

    def call(self, fn: Callable, *args):
        with self._lock:
            self._tasks.put((fn, args))
            while True:
                try:
                    ok, value = self._results.get(timeout=1.0)
                    break
                except queue.Empty:
                    if not self._process.is_alive():
                        raise RuntimeError("The UMAP worker process ended unexpectedly.") from None
        if not ok:
            raise RuntimeError(f"UMAP failed in its worker process ({value}).")
        return value


_worker_lock = threading.Lock()
_worker: _Worker | None = None


def _get_worker() -> _Worker:
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = _Worker()
        return _worker


def _in_worker(fn: Callable, *args):
    return _get_worker().call(fn, *args)


def start_warm_up() -> None:
    """Start the worker and compile UMAP in it in the background; :func:`umap_ready` turns True when done."""
    global _worker
    with _worker_lock:
        if _worker is not None:
            return
        _worker = _Worker()

    def warm() -> None:
        global warm_up_seconds
        try:
            warm_up_seconds = _in_worker(warm_up)
        except RuntimeError:
            return  # PCA stays in use; a later UMAP request reports the error
        _warm.set()

    threading.Thread(target=warm, name="wsscl-umap-warm-up", daemon=True).start()


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
