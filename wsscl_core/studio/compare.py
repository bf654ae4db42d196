"""What the Compare and Methods pages compute: the models to compare for a run, a sample of images seen
by each of them, the details of one image, and the methods' gaps to Retrain.
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..data import ForgetSpec, ForgetSplit
from ..metrics import METRIC_KEYS, Evaluation, avg_gap
from ..runs import RunResult, score
from ..workspace import Workspace
from .references import shipped_original_scores, workspace_identity
from . import embed
from .embed import Embedding, ModelView, model_view, stratified_sample, view_features
from .jobs import RunRecord

BEFORE, AFTER, RETRAIN = "before", "after", "retrain"


def run_key(record: RunRecord) -> tuple[ForgetSpec, int]:
    """Runs are comparable when they forget the same split and score at the same seed."""
    return record.request.spec, record.request.seed


def retrain_for(record: RunRecord, records: Sequence[RunRecord]) -> RunResult | None:
    """Retrain for ``record``'s split: its own (asked for or shipped), the run itself when it is
    Retrain, or the latest Retrain another run of this session has on the same split and seed."""
    if record.is_retrain:
        return record.unlearned
    if record.retrain is not None:
        return record.retrain
    for other in reversed(records):
        if run_key(other) == run_key(record):
            if other.is_retrain:
                return other.unlearned
            if other.retrain is not None:
                return other.retrain
    return None


@dataclass
class SampleViews:
    """A stratified sample of train images and what each model says about them.

    ``views`` maps "before" (the original), "after" (the run's model) and, when there is one,
    "retrain" to features, probabilities and predictions; ``aligned`` names the models that were
    not fine-tuned from the original (their features are mapped into its space for the embedding).
    """

    index: np.ndarray
    labels: np.ndarray
    is_forget: np.ndarray
    views: dict[str, ModelView]
    titles: dict[str, str]
    aligned: tuple[str, ...]

    def features(self) -> dict[str, np.ndarray]:
        """Features for one embedding, fitted on the original; separately trained models aligned on retain rows."""
        return view_features(self.views, np.flatnonzero(~self.is_forget), BEFORE, self.aligned)

    def position_of(self, train_index: int) -> int | None:
        hits = np.flatnonzero(self.index == train_index)
        return int(hits[0]) if len(hits) else None


def sample_views(ws: Workspace, record: RunRecord, retrain: RunResult | None, max_points: int | None = None,
                 ) -> SampleViews:
    """Features, probabilities and predictions of the original, the run's model and Retrain on one
    stratified sample of the train set (forget samples up to a third of it)."""
    labels = ws.data.train.labels.cpu().numpy()
    kwargs = {} if max_points is None else {"max_points": max_points}
    index = stratified_sample(labels, record.split.forget, seed=record.request.seed, **kwargs)
    images = ws.data.train.images[torch.as_tensor(index, device=ws.data.train.images.device)]
    models = {BEFORE: ws.original, AFTER: record.unlearned.model}
    titles = {BEFORE: "Original", AFTER: record.unlearned.label}
    if retrain is not None and not record.is_retrain:
        models[RETRAIN] = retrain.model
        titles[RETRAIN] = retrain.label
    views = {name: model_view(model, images) for name, model in models.items()}
    aligned = tuple(name for name in models if name == RETRAIN or (name == AFTER and record.is_retrain))
    is_forget = np.isin(index, record.split.forget.cpu().numpy())
    return SampleViews(index, labels[index], is_forget, views, titles, aligned)


def forget_neighbourhood(sample: SampleViews, classes: Sequence[str], k: int = 10) -> pd.DataFrame:
    """Where each model puts the forget images among the retained ones, in its own feature space.

    For every forget image, the class most common among its ``k`` nearest retained images (Euclidean,
    penultimate features; Retrain's aligned into the original's space as in the embedding). Per
    model: the share of forget images whose neighbourhood is their own class (the features still
    hold the class), and the classes that hold the others ("absorbed by"). When a whole class is
    forgotten, no retained image has its class, so every forget image is in another class's
    neighbourhood; the question is which.
    """
    from sklearn.neighbors import NearestNeighbors

    forget, retain = np.flatnonzero(sample.is_forget), np.flatnonzero(~sample.is_forget)
    if not len(forget) or len(retain) < k:
        return pd.DataFrame()
    records = []
    for name, features in sample.features().items():
        finder = NearestNeighbors(n_neighbors=k).fit(features[retain])
        neighbours = sample.labels[retain][finder.kneighbors(features[forget], return_distance=False)]
        majority = np.array([np.bincount(row, minlength=len(classes)).argmax() for row in neighbours])
        own = majority == sample.labels[forget]
        absorbed = collections.Counter(majority[~own].tolist()).most_common(3)
        records.append({"model": sample.titles[name], "forget images among their own class (%)": 100 * own.mean(),
                        "the others mostly among": ", ".join(f"{classes[c]} {100 * n / len(forget):.0f} %"
                                                             for c, n in absorbed) or "—"})
    return pd.DataFrame.from_records(records).set_index("model")


@dataclass
class RunViews:
    """A run's sampled views and their UMAP, computed in the background (started when the run ends)."""

    sample: "Future[SampleViews]"
    umap: "Future[Embedding]"


def start_views(ws: Workspace, record: RunRecord, retrain: RunResult | None) -> RunViews:
    """Start computing ``record``'s sample views (features of the three models) and then their UMAP, and
    the original's scores on its split; returns at once. The page waits on ``sample`` (about a second)
    and polls ``umap``."""
    sample = embed.background(sample_views, ws, record, retrain)

    def umap_then_original() -> Embedding:
        umap = embed.submit_umap(sample.result().features(), BEFORE)
        original_scores(ws, record.split, record.request.seed)  # after the features, which the UMAP waits for
        return umap.result()

    return RunViews(sample, embed.background(umap_then_original))


_ORIGINAL_SCORES_KEPT = 16
_original_scores: "collections.OrderedDict[tuple, Future[Evaluation]]" = collections.OrderedDict()
_original_lock = threading.Lock()


def original_scores(ws: Workspace, split: ForgetSplit, seed: int) -> "Future[Evaluation]":
    """The untouched original scored on ``split`` (the row every table carries): the shipped scores where
    there are some, else computed once per original, split and seed in the background; the latest few are kept."""
    identity = workspace_identity(ws)
    key = (identity, str(ws.device), split.spec, split.num_forget, seed)
    with _original_lock:
        future = _original_scores.get(key)
        if future is None or (future.done() and future.exception() is not None):
            shipped = shipped_original_scores(ws, split, seed)
            if shipped is None:
                future = embed.background(score, ws, ws.original, split, seed)
            else:
                future = Future()
                future.set_result(shipped)
            _original_scores[key] = future
            while len(_original_scores) > _ORIGINAL_SCORES_KEPT:
                _original_scores.popitem(last=False)
        _original_scores.move_to_end(key)
    return future


@dataclass
class PointDetail:
    """One sampled image: its train index, class, whether it is forgotten, and each model's probabilities."""

    train_index: int
    label: int
    is_forget: bool
    image: np.ndarray  # (H, W) or (H, W, C) uint8
    probabilities: dict[str, np.ndarray]
    predictions: dict[str, int]


def point_detail(ws: Workspace, sample: SampleViews, position: int) -> PointDetail:
    train_index = int(sample.index[position])
    image = ws.data.train.images[train_index].cpu().numpy()
    image = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    return PointDetail(train_index, int(sample.labels[position]), bool(sample.is_forget[position]), image,
                       {sample.titles[n]: v.probabilities[position] for n, v in sample.views.items()},
                       {sample.titles[n]: int(v.predictions[position]) for n, v in sample.views.items()})


def gap_table(rows: dict[str, Evaluation], retrain: Evaluation) -> pd.DataFrame:
    """Each model's UA, RA, TA and MIA minus Retrain's (signed: + means above Retrain) and its Avg.Gap."""
    reference = retrain.scores()
    records = []
    for name, ev in rows.items():
        scores = ev.scores()
        records.append({"model": name, **{k: round(scores[k] - reference[k], 2) for k in METRIC_KEYS},
                        "Avg.Gap": round(avg_gap(scores, reference), 2)})
    return pd.DataFrame.from_records(records).set_index("model")


def confusion_differences(rows: dict[str, Evaluation], reference: Evaluation) -> dict[str, np.ndarray]:
    """Each model's test confusion minus the reference's (counts; + means more often than the reference)."""
    return {name: ev.confusion_test.astype(int) - reference.confusion_test.astype(int) for name, ev in rows.items()}


def comparable_groups(records: Sequence[RunRecord]) -> dict[tuple[ForgetSpec, int], list[RunRecord]]:
    """This session's runs grouped by split and seed, newest group first, runs oldest first."""
    groups: dict[tuple[ForgetSpec, int], list[RunRecord]] = {}
    for record in records:
        groups.setdefault(run_key(record), []).append(record)
    return dict(sorted(groups.items(), key=lambda kv: -kv[1][-1].number))


def default_selection(records: Sequence[RunRecord], limit: int = 4) -> list[RunRecord]:
    """The latest run of each method (Retrain runs excluded: they are the reference), at most ``limit``."""
    latest: dict[str, RunRecord] = {}
    for record in records:
        if not record.is_retrain:
            latest[record.unlearned.method] = record
    return sorted(latest.values(), key=lambda r: r.number)[-limit:]
