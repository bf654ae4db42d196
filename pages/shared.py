"""What every studio page shares: cached loaders, this session's state, and the live-run panel."""

from __future__ import annotations

import hashlib
import os
from dataclasses import fields
from typing import Any

import numpy as np
import streamlit as st
import torch

from pages.navigation import enter_through_app
from wsscl_core.data import Dataset, ForgetSpec, ForgetSplit, load_dataset
from wsscl_core.errors import WssclError
from wsscl_core.methods import METHODS, literal_choices
from wsscl_core.metrics import Evaluation, accuracy, confusion_matrix, per_class_accuracy, predict_logits
from wsscl_core.models import pick_device
from wsscl_core.runs import score
from wsscl_core.saliency import SaliencyResult, compute_saliency
from wsscl_core.studio import embed, plots
from wsscl_core.studio.jobs import Job, RunRecord, SessionJobs, UnlearnRequest, prepare_run, unlearn_work
from wsscl_core.workspace import Workspace, open_workspace

POLL_S = 0.8  # live-view refresh; measured 0.80 s median, 0.92 s max between updates. At 0.3 s the
# redraws took so much CPU that the default demo ended 31.5 s after the click instead of 22.6 s.
FIRST_POINT_WAIT_S = 0.6  # how long a new run's live view waits for its first progress event before drawing
DEFAULT_FORGET = ForgetSpec("class", (0,))


# --------------------------------------------------------------------------- cached, shared by all sessions

@st.cache_resource(show_spinner="Loading the shipped model and dataset…")
def default_workspace() -> Workspace:
    return open_workspace()


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=4)
def dataset(name: str) -> Dataset:
    return load_dataset(name)


@st.cache_resource(show_spinner="Loading the checkpoint…", max_entries=4)
def uploaded_workspace(dataset_name: str, model_name: str | None, digest: str, _payload: bytes) -> Workspace:
    """A workspace from uploaded bytes; cached by content digest, loaded only via the safe loader."""
    return open_workspace(_payload, dataset(dataset_name), model_name=model_name)


@st.cache_resource(show_spinner="Scoring the original model…", max_entries=16)
def original_evaluation(workspace_key: str, spec_text: str, seed: int, _ws: Workspace, _split: ForgetSplit) -> Evaluation:
    return score(_ws, _ws.original, _split, seed)


@st.cache_resource(show_spinner=False, max_entries=8)
def sample_views(workspace_key: str, run_number: int, _ws: Workspace, _record: RunRecord) -> dict[str, Any]:
    """Stratified sample of the run's train images and each model's features and predictions on it."""
    labels = _ws.data.train.labels.cpu().numpy()
    index = embed.stratified_sample(labels, _record.split.forget, seed=_record.request.seed)
    images = _ws.data.train.images[torch.as_tensor(index, device=_ws.data.train.images.device)]
    models = {"before": _ws.original, "after": _record.unlearned.model}
    if _record.retrain is not None:
        models["retrain"] = _record.retrain.model
    views = {name: embed.model_view(model, images) for name, model in models.items()}
    is_forget = np.isin(index, _record.split.forget.cpu().numpy())
    return {"labels": labels[index], "is_forget": is_forget, "views": views}


@st.cache_resource(show_spinner=False, max_entries=8)
def run_embedding(workspace_key: str, run_number: int, projection: str, _ws: Workspace,
                  _record: RunRecord) -> embed.Embedding:
    views = sample_views(workspace_key, run_number, _ws, _record)["views"]
    return embed.aligned_embedding({name: v.features for name, v in views.items()}, "before", projection)


def _to_pil(image: torch.Tensor, size: int = 64):
    from PIL import Image

    array = image.cpu().numpy()
    array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    return Image.fromarray(array).resize((size, size), Image.NEAREST)


@st.cache_resource(show_spinner="Scoring the model on the test set…", max_entries=8)
def test_scores(workspace_key: str, _ws: Workspace) -> tuple[float, np.ndarray]:
    """Test accuracy and per-class test accuracy of the original model, in %."""
    logits = predict_logits(_ws.original, _ws.data.test.images)
    per_class = per_class_accuracy(confusion_matrix(logits, _ws.data.test.labels, _ws.data.num_classes))
    return accuracy(logits, _ws.data.test.labels), per_class


@st.cache_resource(show_spinner=False, max_entries=8)
def class_thumbnails(workspace_key: str, _ws: Workspace) -> list:
    """The first train image of each class, for the class picker."""
    labels = _ws.data.train.labels
    return [_to_pil(_ws.data.train.images[int((labels == c).nonzero()[0])]) for c in range(_ws.data.num_classes)]


@st.cache_resource(show_spinner=False, max_entries=8)
def test_samples(workspace_key: str, _ws: Workspace, count: int = 16) -> tuple[list, list[str]]:
    """A fixed set of test images with captions "predicted (true)", for the Model page."""
    pick = torch.randperm(len(_ws.data.test), generator=torch.Generator().manual_seed(0))[:count]
    images = _ws.data.test.images[pick.to(_ws.data.test.images.device)]
    predicted = predict_logits(_ws.original, images).argmax(1)
    truth = _ws.data.test.labels[pick.to(_ws.data.test.labels.device)].cpu()
    names = _ws.data.classes
    captions = [f"{'right' if p == t else 'wrong'}: {names[p]}" + ("" if p == t else f" (is {names[t]})")
                for p, t in zip(predicted.tolist(), truth.tolist())]
    return [_to_pil(im, 84) for im in images], captions


@st.cache_resource(show_spinner=False, max_entries=8)
def stage1_example(workspace_key: str, _ws: Workspace, forgotten: int):
    """Home's illustration: the model's probabilities on the first train image of ``forgotten``."""
    first = int((_ws.data.train.labels == forgotten).nonzero()[0])
    probabilities = torch.softmax(predict_logits(_ws.original, _ws.data.train.images[first:first + 1]), 1)[0]
    return plots.stage1_target_figure(probabilities.numpy(), forgotten, _ws.data.classes)


@st.cache_resource(show_spinner="Computing forget-set gradients…", max_entries=4)
def saliency(workspace_key: str, spec_text: str, ratio: float, normalisation: str, _ws: Workspace,
             _split: ForgetSplit) -> SaliencyResult:
    return compute_saliency(_ws.original, _ws.data, _split, ratio, normalisation)


def enter_page(page_file: str) -> None:
    """The first call of every page: route a deep link through app.py, then run the start-up."""
    enter_through_app(page_file)
    start_up()


def start_up() -> None:
    """Once per server: leave a CPU core to the UMAP worker and the web server (oversubscribed
    OpenMP threads made training steps ~3x slower here), and start UMAP's warm-up."""
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    embed.start_warm_up()


# --------------------------------------------------------------------------- this session

def jobs() -> SessionJobs:
    """This browser session's runs (never shared with another session)."""
    if "jobs" not in st.session_state:
        st.session_state.jobs = SessionJobs()
    return st.session_state.jobs


def workspace(required: bool = True) -> Workspace | None:
    """The session's model and dataset; the shipped ones until the user picks others.

    If the shipped model cannot be loaded, shows the library's message and stops the page
    (or returns None when ``required`` is False, so the Model page can offer training and upload).
    """
    if "workspace" not in st.session_state:
        try:
            use_workspace(default_workspace(), "default")
        except WssclError as exc:
            st.error(str(exc))
            if not required:
                return None
            st.page_link("pages/model.py", label="Train or upload an original model on the Model page", icon=":material/model_training:")
            st.stop()
    return st.session_state.workspace


def workspace_key() -> str:
    workspace()
    return st.session_state.workspace_key


def use_workspace(ws: Workspace, key: str) -> None:
    st.session_state.workspace = ws
    st.session_state.workspace_key = key


def digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()[:16]


def adopt_upload(payload: bytes, dataset_name: str, model_name: str | None) -> bool:
    """Make an uploaded checkpoint this session's model; on any problem show the library's message."""
    try:
        ws = uploaded_workspace(dataset_name, model_name, digest(payload), payload)
    except WssclError as exc:
        st.error(str(exc))
        return False
    use_workspace(ws, f"upload:{dataset_name}:{model_name}:{digest(payload)}")
    return True


def runs() -> list[RunRecord]:
    """This session's finished unlearning runs on the current model, oldest first."""
    key = workspace_key()
    return [r for r in jobs().results("unlearn") if r.request.workspace_key == key]


def device_text() -> str:
    device = pick_device()
    if device.type == "cuda":
        return f"CUDA GPU ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"CPU ({threads} compute thread{'s' if threads > 1 else ''})"


def default_method() -> str:
    """WSS-CL when registered, else the first unlearning method."""
    return "wsscl" if "wsscl" in METHODS else next(m for m in METHODS if m != "retrain")


def default_request() -> UnlearnRequest:
    return UnlearnRequest(DEFAULT_FORGET, default_method(), workspace_key=workspace_key())


def start_run(request: UnlearnRequest) -> bool:
    """Validate and start an unlearning run in the background; show the library's message if refused."""
    try:
        prepared = prepare_run(workspace(), request)
        for note in prepared.notes:
            st.warning(note)
        jobs().start("unlearn", f"{METHODS[request.method].label} on {request.spec}", unlearn_work(workspace(), prepared))
    except WssclError as exc:
        st.error(str(exc))
        return False
    return True


def _rerun_once_after(job: Job) -> None:
    """When a polled run has ended, rerun the whole page once so it stops polling and shows the result."""
    if not job.running and st.session_state.get("seen_end") != job.number:
        st.session_state.seen_end = job.number
        st.rerun()


def sidebar_status() -> None:
    """The current run's progress on every page; its polling is also the run's heartbeat."""
    job = jobs().current
    if job is None:
        return

    def body() -> None:
        job.touch()
        if job.running:
            fraction = job.latest.event.fraction_done if job.latest else 0.0
            st.progress(min(max(fraction, 0.0), 1.0), text=f"Running: {job.title}\n\n{job.stage}")
        else:
            st.caption(f"Last run: {job.title} — {job.status}")
        _rerun_once_after(job)

    with st.sidebar:
        st.fragment(body, run_every=1.0 if job.running else None)()


# --------------------------------------------------------------------------- widgets

def config_inputs(config: Any, key_prefix: str) -> dict[str, Any]:
    """One input per field of a config dataclass (a method's, or the training recipe), defaulting to its value."""
    values: dict[str, Any] = {}
    choices = literal_choices(type(config))  # fields with a fixed set of values get a select box
    for f in fields(config):
        default, key = getattr(config, f.name), f"{key_prefix}.{f.name}"
        if isinstance(default, bool):
            values[f.name] = st.checkbox(f.name, default, key=key, persist_state="session")
        elif isinstance(default, int):
            values[f.name] = st.number_input(f.name, value=default, step=1, key=key, persist_state="session")
        elif isinstance(default, float):
            values[f.name] = st.number_input(f.name, value=default, format="%g", step=None, key=key, persist_state="session")
        elif f.name in choices:
            options = list(choices[f.name])
            values[f.name] = st.selectbox(f.name, options, index=options.index(default), key=key, persist_state="session")
        else:
            values[f.name] = st.text_input(f.name, str(default), key=key, persist_state="session")
    return values


def _eta(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.0f} s"


def job_panel(job: Job) -> None:
    """Live view of a run: phase, progress with ETA, loss and accuracy curves, and a Stop button.

    Polls while the run is going; when it ends, reruns the page once so it can show the result.
    """

    def body() -> None:
        job.touch()
        if job.running and not job.events:  # the first draw then has a point (the first event takes ~0.1–0.4 s)
            job.wait_for_progress(FIRST_POINT_WAIT_S)
        latest = job.latest
        if job.running:
            cols = st.columns([4, 1])
            fraction = latest.event.fraction_done if latest else 0.0
            eta = latest.event.eta_s if latest else None
            cols[0].progress(min(max(fraction, 0.0), 1.0),
                             text=f"{job.stage} — {fraction:.0%}, {job.elapsed_s:.0f} s elapsed, ETA {_eta(eta)}")
            if cols[1].button("Stop training", type="primary", key=f"stop-{job.number}"):
                job.stop()
                st.rerun()
        elif job.status == "done":
            st.success(f"{job.title} finished in {job.elapsed_s:.1f} s.")
        else:
            (st.warning if job.status == "cancelled" else st.error)(job.error)
        if latest is not None:
            metrics = {k: v for k, v in latest.event.metrics.items() if k.endswith("_acc")}
            if metrics:
                cols = st.columns(len(metrics))
                for col, (name, value) in zip(cols, metrics.items()):
                    col.metric(name.replace("_acc", " accuracy (batches)"), f"{value:.1f} %")
            left, right = st.columns(2)
            left.plotly_chart(plots.loss_figure(job.events), key=f"loss-{job.number}")
            right.plotly_chart(plots.accuracy_figure(job.events), key=f"acc-{job.number}")
        _rerun_once_after(job)

    st.fragment(body, run_every=POLL_S if job.running else None)()
