"""Cached loaders and computations shared by every session (``st.cache_resource``).

Each cached function takes the objects it works on and hashes them with ``hash_funcs``: a
workspace by the identity of its original (dataset fingerprint, weights hash, architecture), a run
by its number, a run result by what it is (method, split, seed, scores), and forget gradients by the
workspace and forget set they belong to. No caller keeps a string key and an object consistent by
hand. The original's scores on a split are memoised in the library (``compare.original_scores``),
which starts them in the background while a run trains.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from wsscl_core.data import Dataset, ForgetSplit, load_dataset
from wsscl_core.metrics import Evaluation, accuracy, confusion_matrix, per_class_accuracy, predict_logits
from wsscl_core.runs import RunResult
from wsscl_core.saliency import SaliencyResult
from wsscl_core.studio import embed, plots, references, saliency_view
from wsscl_core.studio.compare import RunViews, SampleViews, original_scores, start_views
from wsscl_core.studio.jobs import RunRecord, SaliencyGradients
from wsscl_core.workspace import Workspace, open_workspace


def workspace_hash(ws: Workspace) -> str:
    identity = references.workspace_identity(ws)
    return f"{identity.model}:{identity.dataset_fingerprint}:{identity.original_weights}:{ws.device}"


def result_hash(result: RunResult | None) -> str:
    if result is None:
        return "none"
    scores = ",".join(f"{v:.6g}" for v in result.scores().values())
    return f"{result.method}:{result.label}:{result.request.forget}:{result.request.forget.seed}:" \
           f"{result.request.seed}:{result.rte_s:.6g}:{scores}"


HASH_FUNCS = {
    Workspace: workspace_hash,
    RunRecord: lambda record: record.number,
    RunResult: result_hash,
    SaliencyGradients: lambda g: (g.workspace_id, str(g.spec), g.spec.seed, g.seconds),
}


def cached(**kwargs):
    """``st.cache_resource`` with the studio's ``hash_funcs``."""
    return st.cache_resource(hash_funcs=HASH_FUNCS, **kwargs)


# --------------------------------------------------------------------------- models and data

@st.cache_resource(show_spinner="Loading the shipped model and dataset…")
def default_workspace() -> Workspace:
    return open_workspace()


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=4)
def dataset(name: str) -> Dataset:
    return load_dataset(name)


@st.cache_resource(show_spinner="Loading the checkpoint…", max_entries=4)
def uploaded_workspace(dataset_name: str, model_name: str | None, payload: bytes) -> Workspace:
    """A workspace from uploaded bytes (hashed by content), loaded only via the safe loader."""
    return open_workspace(payload, dataset(dataset_name), model_name=model_name)


@cached(show_spinner=False, max_entries=8)
def shipped_references(ws: Workspace) -> references.References:
    """The shipped Retrain references that belong to ``ws``'s original (none, with a note, otherwise)."""
    return references.load_references(ws)


def original_evaluation(ws: Workspace, split: ForgetSplit, seed: int) -> Evaluation:
    """The original scored on ``split`` (started in the background when a run ends, so usually ready)."""
    future = original_scores(ws, split, seed)
    if not future.done():
        with st.spinner("Scoring the original model…"):
            return future.result()
    return future.result()


# --------------------------------------------------------------------------- Compare's feature views

@cached(show_spinner=False, max_entries=8)
def run_views(ws: Workspace, record: RunRecord, retrain: RunResult | None) -> RunViews:
    """The run's sampled views (features, probabilities, predictions of the original, the run's model and
    Retrain) and their UMAP, started in the background; the Unlearn page starts them when the run ends."""
    return start_views(ws, record, retrain)


def run_sample(ws: Workspace, record: RunRecord, retrain: RunResult | None) -> SampleViews:
    return run_views(ws, record, retrain).sample.result()


@cached(show_spinner=False, max_entries=8)
def forget_neighbourhood(ws: Workspace, record: RunRecord, retrain: RunResult | None):
    from wsscl_core.studio.compare import forget_neighbourhood as neighbourhood

    return neighbourhood(run_sample(ws, record, retrain), ws.data.classes)


@cached(show_spinner=False, max_entries=8)
def pca_embedding(ws: Workspace, record: RunRecord, retrain: RunResult | None) -> embed.Embedding:
    return embed.aligned_embedding(run_sample(ws, record, retrain).features(), "before", "pca")


# --------------------------------------------------------------------------- small views

def to_pil(image: torch.Tensor | np.ndarray, size: int = 64):
    from PIL import Image

    array = image.cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    return Image.fromarray(array).resize((size, size), Image.NEAREST)


@cached(show_spinner="Scoring the model on the test set…", max_entries=8)
def test_scores(ws: Workspace) -> tuple[float, np.ndarray]:
    """Test accuracy and per-class test accuracy of the original model, in %."""
    logits = predict_logits(ws.original, ws.data.test.images)
    per_class = per_class_accuracy(confusion_matrix(logits, ws.data.test.labels, ws.data.num_classes))
    return accuracy(logits, ws.data.test.labels), per_class


@cached(show_spinner=False, max_entries=8)
def class_thumbnails(ws: Workspace) -> list:
    """The first train image of each class, for the class picker."""
    labels = ws.data.train.labels
    return [to_pil(ws.data.train.images[int((labels == c).nonzero()[0])]) for c in range(ws.data.num_classes)]


@cached(show_spinner=False, max_entries=8)
def test_samples(ws: Workspace, count: int = 16) -> tuple[list, list[str]]:
    """A fixed set of test images with captions "predicted (true)", for the Model page."""
    pick = torch.randperm(len(ws.data.test), generator=torch.Generator().manual_seed(0))[:count]
    images = ws.data.test.images[pick.to(ws.data.test.images.device)]
    predicted = predict_logits(ws.original, images).argmax(1)
    truth = ws.data.test.labels[pick.to(ws.data.test.labels.device)].cpu()
    names = ws.data.classes
    captions = [f"{'right' if p == t else 'wrong'}: {names[p]}" + ("" if p == t else f" (is {names[t]})")
                for p, t in zip(predicted.tolist(), truth.tolist())]
    return [to_pil(im, 84) for im in images], captions


@cached(show_spinner=False, max_entries=8)
def stage1_example(ws: Workspace, forgotten: int):
    """Home's illustration: the model's probabilities on the first train image of ``forgotten``."""
    first = int((ws.data.train.labels == forgotten).nonzero()[0])
    probabilities = torch.softmax(predict_logits(ws.original, ws.data.train.images[first:first + 1]), 1)[0]
    return plots.stage1_target_figure(probabilities.numpy(), forgotten, ws.data.classes)


@cached(show_spinner="Deriving the masks…", max_entries=8)
def saliency_masks(gradients: SaliencyGradients, ratio: float, normalisation: str) -> SaliencyResult:
    """Hard and soft masks from the forget gradients (the gradients are the slow, stoppable part)."""
    return saliency_view.masks(gradients.grads, ratio, normalisation)
