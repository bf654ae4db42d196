"""2-D views of penultimate features: one space for every model, fitted on the original ("before").

UMAP is fitted on the original model's features and the other models' features are
*transformed* into that space, so positions are comparable across panels. A model that was not
fine-tuned from the original (Retrain, trained from scratch) has features in a basis of its own;
:func:`align_features` first maps them into the original's feature space by a linear map fitted on
retained images only, so that the forget samples' positions say where that model puts them
relative to the classes it kept.

UMAP runs in one separate worker process (numba compilation holds the GIL). Its neighbour graph
comes from exact distances computed with numpy (``metric="precomputed"``), which skips
pynndescent, whose compilation cannot be cached; the rest of UMAP's numba code is cached on disk
(:func:`enable_numba_cache`), so a fresh server's worker loads it instead of compiling it again.
:func:`start_warm_up` starts the worker and loads (or, the first time on a machine, compiles) that
code in the background; :func:`submit_umap` queues a fit without blocking the page, which shows PCA
until the result is there.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sys
import threading
import time
import types
import warnings
from contextlib import contextmanager
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
import torch

from ..metrics import predict_features
from ..models import Classifier

MAX_POINTS = 1500  # sampled images per view: enough for every class's cluster, and a fit of a few seconds
WORKER_NICENESS = 0  # the same priority as the server: see _Worker
COLD_COMPILE_NICENESS = 10  # while numba's disk cache is empty (a machine's first start), the compile yields
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


@contextmanager
def _one_blas_thread():
    """numpy/scipy linear algebra on one thread: on a busy 2-core CPU, OpenBLAS's threads made a
    1,500 × 512 PCA take 2–6 s instead of 0.06 s (measured), and these matrices are small."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@dataclass
class ModelView:
    """What a model says about the sampled images: features, class probabilities and predicted classes."""

    features: np.ndarray
    predictions: np.ndarray
    probabilities: np.ndarray | None = None


def model_view(model: Classifier, images: torch.Tensor) -> ModelView:
    """Penultimate features, softmax probabilities and predictions of ``model`` on ``images`` (uint8, any device)."""
    features = predict_features(model, images)
    head = model.output_layer()
    with torch.no_grad():  # the head on the features: one forward pass instead of two
        logits = head(features.to(next(head.parameters()).device)).float().cpu()
    return ModelView(features.numpy(), logits.argmax(1).numpy(), torch.softmax(logits, 1).numpy())


def align_features(source: np.ndarray, target: np.ndarray, fit_rows: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """``source`` features mapped into ``target``'s space by the affine least-squares map fitted on ``fit_rows``.

    For a model trained separately from the original (Retrain), whose feature basis is its own:
    the map is fitted on retained images only (both models were trained on them), then applied to
    every image, so a forget image lands where that model's features put it among the retained ones.
    ``ridge`` (relative to the mean squared feature) keeps the fit stable when features outnumber rows.
    """
    with _one_blas_thread():
        return _align(np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64),
                      np.asarray(fit_rows), ridge)


def _align(source: np.ndarray, target: np.ndarray, rows: np.ndarray, ridge: float) -> np.ndarray:
    x = np.hstack([source, np.ones((len(source), 1))])
    a, b = x[rows], target[rows]
    penalty = ridge * max(float(np.mean(a[:, :-1] ** 2)), 1e-12) * len(a)
    regulariser = np.eye(x.shape[1]) * penalty
    regulariser[-1, -1] = 0.0  # the offset is not shrunk
    weights = np.linalg.solve(a.T @ a + regulariser, a.T @ b)
    return (x @ weights).astype(np.float32)


@dataclass
class Embedding:
    """2-D coordinates per model name, all in the space fitted on ``reference``."""

    projection: Projection
    reference: str
    coords: dict[str, np.ndarray]
    seconds: float


_warm = threading.Event()
warm_up_seconds: float | None = None


def enable_numba_cache() -> int:
    """Cache UMAP's and pynndescent's compiled numba code on disk; returns how many functions were switched.

    Most of their jitted functions are declared without ``cache=True``, so every new process
    compiles them again. Switching caching on for each dispatcher before its first call makes numba
    write the machine code next to the sources (or, where that is read-only, in its user-wide cache
    directory, or in ``NUMBA_CACHE_DIR`` when set) and load it in later processes. A function numba
    cannot cache is compiled as before.
    """
    import umap  # noqa: F401  (imports pynndescent too)
    from numba.core.dispatcher import Dispatcher

    switched = 0
    for name, module in list(sys.modules.items()):
        if not name.startswith(("umap", "pynndescent")) or module is None:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher) and type(value._cache).__name__ == "NullCache":
                try:
                    value.enable_caching()
                    switched += 1
                except Exception:  # a function numba cannot cache (e.g. no source file): compiled as before
                    pass
    return switched


def numba_cache_is_warm() -> bool:
    """Whether numba's disk cache already holds UMAP's layout code (it does after a first start)."""
    from umap.layouts import _nb_optimize_layout_euclidean_single_epoch as layout

    index = getattr(getattr(layout._cache, "_cache_file", None), "_index_path", None)
    return bool(index) and os.path.exists(index)


def numba_cache_state() -> dict[str, bool]:
    """In the worker process: whether UMAP's numba code is cached on disk (switched on, and written).

    Only the worker imports numba: numba's threads in the server process made torch's results
    differ in the last digits between identical runs."""
    import umap.layouts
    import umap.umap_

    switched = all(type(f._cache).__name__ != "NullCache"
                   for f in (umap.umap_.smooth_knn_dist, umap.layouts._nb_optimize_layout_euclidean_single_epoch))
    return {"caching": switched, "warm": numba_cache_is_warm()}


def _fit_umap(distances: np.ndarray):
    """UMAP on a precomputed (n, n) distance matrix of the reference features.

    150 layout epochs instead of 500 (and 50 for a transform): the picture is settled by then and the
    fit takes about a third of the time. Exact distances from numpy replace the approximate neighbour search (pynndescent), whose
    numba code takes a function argument and so is compiled again in every process (most of the
    old warm-up's minute); for the ≤ 2,000 points of a view the full matrix is small.
    """
    import umap

    n_neighbors = int(min(15, max(2, len(distances) - 1)))
    return umap.UMAP(n_neighbors=n_neighbors, min_dist=0.1, n_epochs=150, random_state=0, n_jobs=1,
                     metric="precomputed").fit(distances)


WARM_UP_POINTS = 300  # the code paths do not depend on the number of points once the neighbours are precomputed


def warm_up() -> float:
    """Load (or compile) UMAP's numba code on random data: a fit and a transform, through the same
    path as a real view."""
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    _umap_coords({"before": rng.normal(size=(WARM_UP_POINTS, UMAP_INPUT_DIMS)).astype(np.float32),
                  "after": rng.normal(size=(WARM_UP_POINTS // 3, UMAP_INPUT_DIMS)).astype(np.float32)}, "before")
    return time.perf_counter() - start


def _umap_coords(features: dict[str, np.ndarray], reference: str) -> dict[str, np.ndarray]:
    """UMAP fitted on the reference, the others transformed into it; features wider than
    ``UMAP_INPUT_DIMS`` are first projected by a PCA fitted on the reference (usual UMAP practice)."""
    from sklearn.metrics import pairwise_distances

    if features[reference].shape[1] > UMAP_INPUT_DIMS:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=UMAP_INPUT_DIMS, svd_solver="full").fit(features[reference])
        features = {name: pca.transform(f).astype(np.float32) for name, f in features.items()}
    base = features[reference]
    distances = pairwise_distances(base, base).astype(np.float32)
    np.fill_diagonal(distances, 0.0)
    reducer = _fit_umap(distances)
    coords = {reference: reducer.embedding_}
    for name, f in features.items():
        if name != reference:  # a model whose features did not change sits exactly on the reference's points
            coords[name] = (reducer.embedding_ if np.array_equal(f, base)
                            else reducer.transform(pairwise_distances(f, base).astype(np.float32)))
    return coords


def _serve(tasks: multiprocessing.Queue, results: multiprocessing.Queue) -> None:
    """The worker process's loop: run each ``(fn, args)`` and send back ``(ok, value or message)``."""
    if WORKER_NICENESS:
        os.nice(WORKER_NICENESS)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one BLAS thread: see _one_blas_thread
    warnings.filterwarnings("ignore")  # numba's notes on functions it cannot cache, umap's on n_jobs
    try:
        enable_numba_cache()
        if not numba_cache_is_warm():  # half a minute of compiling: let the live run and the pages go first
            os.nice(COLD_COMPILE_NICENESS)
    except Exception:  # no umap installed: the calls below report it
        pass
    while True:
        fn, args = tasks.get()
        try:
            results.put((True, fn(*args)))
        except Exception as exc:  # reported to the caller, which raises it in the app
            results.put((False, f"{type(exc).__name__}: {exc}"))


class _Worker:
    """One UMAP process for the whole app, used by one caller at a time.

    Numba compilation holds the GIL (half a minute the first time on a machine, before the disk
    cache has the code), so it must not share a process with training threads; later fits reuse
    the compiled code. It runs at the server's CPU priority once the code is cached (its warm-up is
    then under a second, and a lower priority starved the fit a Compare page waits for whenever other
    processes kept the cores busy: 8 s instead of 2.5 s at nice +10 on a loaded 2-core CPU); while
    the cache is still empty it compiles at ``COLD_COMPILE_NICENESS``, behind the live run. The
    process is a daemon, so stopping the app ends it at once.
    """

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._tasks, self._results = context.Queue(), context.Queue()
        self._process = context.Process(target=_serve, args=(self._tasks, self._results), daemon=True,
                                        name="wsscl-umap")
        with _no_main_script():
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


@contextmanager
def _no_main_script():
    """A spawned process first re-runs its parent's ``__main__`` file; under Streamlit that is the page
    script (app.py), which must not run again in the worker (it imported the studio and logged warnings
    there). While the worker starts, ``__main__`` is a module without a file, which spawn skips."""
    main = sys.modules.get("__main__")
    placeholder = types.ModuleType("__main__")
    sys.modules["__main__"] = placeholder
    try:
        yield
    finally:
        if main is not None and sys.modules.get("__main__") is placeholder:
            sys.modules["__main__"] = main


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

        with _one_blas_thread():
            reducer = PCA(n_components=2, svd_solver="full").fit(features[reference])
            coords = {name: reducer.transform(f) for name, f in features.items()}
    return Embedding(projection, reference, {k: np.asarray(v, dtype=np.float32) for k, v in coords.items()},
                     time.perf_counter() - start)


def background(fn: Callable, *args) -> Future:
    """Run ``fn(*args)`` in a daemon thread and return its future (a pending UMAP call never holds up the
    server's exit, as an executor's threads would)."""
    future: Future = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to whoever reads the future
            future.set_exception(exc)

    threading.Thread(target=run, name="wsscl-background", daemon=True).start()
    return future


def submit_umap(features: dict[str, np.ndarray], reference: str = "before") -> "Future[Embedding]":
    """Queue a UMAP embedding in the worker (after its warm-up) and return at once; the page polls the future."""
    features = {name: np.asarray(f, dtype=np.float32) for name, f in features.items()}
    return background(aligned_embedding, features, reference, "umap")


def view_features(views: dict[str, ModelView], fit_rows: np.ndarray, reference: str = "before",
                  align: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Each view's features for one embedding; the models named in ``align`` mapped into the reference's
    feature space first (:func:`align_features`, fitted on ``fit_rows``)."""
    base = views[reference].features
    return {name: align_features(v.features, base, fit_rows) if name in align else v.features
            for name, v in views.items()}
