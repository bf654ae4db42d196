"""This browser session's state: its model, its runs, starting runs, and the choices carried by the URL."""

from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st
import torch

from pages import cache
from pages.navigation import enter_through_app
from wsscl_core.data import ForgetSpec, make_forget_split
from wsscl_core.errors import WssclError
from wsscl_core.methods import METHODS
from wsscl_core.models import pick_device
from wsscl_core.runs import RunResult
from wsscl_core.studio import embed, share
from wsscl_core.studio.compare import original_scores
from wsscl_core.studio.jobs import QueuedJob, RunRecord, SessionJobs, UnlearnRequest, prepare_run, unlearn_work
from wsscl_core.workspace import Workspace

DEFAULT_FORGET = ForgetSpec("class", (0,))
CLASS_DEMO_METHODS = ("wsscl", "salun")  # the one-click class demo runs these, then Retrain unless it is shipped


def enter_page(page_file: str) -> None:
    """The first call of every page: route a deep link through app.py, then run the start-up."""
    enter_through_app(page_file)
    start_up()


def start_up() -> None:
    """Once per server: start UMAP's warm-up. Training keeps torch's default threads (one per core):
    app.py makes idle OpenMP threads sleep, so they no longer take the core from the web server, the
    browser and the UMAP worker (spinning threads made training steps ~3x slower here)."""
    embed.start_warm_up()


# --------------------------------------------------------------------------- model and runs

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
            use_workspace(cache.default_workspace(), "default")
        except WssclError as exc:
            st.error(str(exc))
            if not required:
                return None
            st.page_link("pages/model.py", label="Train or upload an original model on the Model page",
                         icon=":material/model_training:")
            st.stop()
    return st.session_state.workspace


def workspace_key() -> str:
    """Which original this session works on ("default", "trained:N", "upload:…"); runs are tagged with it."""
    workspace()
    return st.session_state.workspace_key


def use_workspace(ws: Workspace, key: str) -> None:
    st.session_state.workspace = ws
    st.session_state.workspace_key = key


def adopt_upload(payload: bytes, dataset_name: str, model_name: str | None) -> bool:
    """Make an uploaded checkpoint this session's model; on any problem show the library's message."""
    try:
        ws = cache.uploaded_workspace(dataset_name, model_name, payload)
    except WssclError as exc:
        st.error(str(exc))
        return False
    use_workspace(ws, f"upload:{dataset_name}:{model_name}:{cache.workspace_hash(ws)}")
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


def references_note() -> str | None:
    """Why the shipped Retrain references are not used for this session's model (None when they are,
    or when the model is not the shipped one and so has none)."""
    refs = cache.shipped_references(workspace())
    return refs.note if workspace_key() == "default" else None


def has_reference(spec: ForgetSpec, seed: int) -> bool:
    return cache.shipped_references(workspace()).has(spec, seed)


def _reference_loader(ws: Workspace, request: UnlearnRequest):
    refs = cache.shipped_references(ws)
    if request.with_retrain or not refs.has(request.spec, request.seed):
        return None
    split = make_forget_split(ws.data.train.labels, request.spec, ws.data.num_classes)

    def load() -> RunResult | None:
        return refs.get(ws, split, request.seed)

    return load


def _queued(ws: Workspace, request: UnlearnRequest) -> QueuedJob:
    prepared = prepare_run(ws, request)
    for note in prepared.notes:
        st.warning(note)
    # The original's scores on this split, which Compare's table needs: shipped, or computed while the run trains.
    original_scores(ws, prepared.split, request.seed)
    return QueuedJob("unlearn", f"{METHODS[request.method].label} on {request.spec}",
                     unlearn_work(ws, prepared, _reference_loader(ws, request)))


def start_run(request: UnlearnRequest) -> bool:
    """Validate and start an unlearning run in the background (with the shipped Retrain when there is one);
    show the library's message if refused."""
    try:
        jobs().start_queue([_queued(workspace(), request)])
    except WssclError as exc:
        st.error(str(exc))
        return False
    return True


def start_suite(spec: ForgetSpec, seed: int, methods: tuple[str, ...] | None = None) -> bool:
    """Queue ``methods`` (the class demo's by default) with their defaults on one forget set, then Retrain
    unless a shipped one exists."""
    ws, key = workspace(), workspace_key()
    methods = CLASS_DEMO_METHODS if methods is None else methods
    try:
        items = [_queued(ws, UnlearnRequest(spec, m, {}, False, seed, key)) for m in methods]
        if not has_reference(spec, seed):
            items.append(_queued(ws, UnlearnRequest(spec, "retrain", {}, False, seed, key)))
        jobs().start_queue(items)
    except WssclError as exc:
        st.error(str(exc))
        return False
    return True


def prefetch_views(record: RunRecord) -> None:
    """Start the Compare page's feature views and UMAP for a finished run in the background."""
    from wsscl_core.studio.compare import retrain_for

    if record.request.workspace_key == workspace_key():
        cache.run_views(workspace(), record, retrain_for(record, runs()))


# --------------------------------------------------------------------------- the URL

FORGET_KINDS = ("A whole class", "A random subset")


def _link_params() -> dict[str, list[str]]:
    return {k: st.query_params.get_all(k) for k in st.query_params if k in share.KEYS}


def _signature(params: dict[str, list[str]]) -> tuple:
    return tuple(sorted((k, tuple(v)) for k, v in params.items()))


def apply_link() -> share.SharedState:
    """The choices in this page's URL. The first time a session sees a link, its forget set, seed,
    method and hyperparameters are put into the Unlearn page's inputs (nothing runs) and any value it
    cannot use is reported with ``st.error``."""
    params = _link_params()
    if not params:
        return share.SharedState()
    ws = workspace()
    state = share.from_query(params, ws.data.num_classes)
    if st.session_state.get("applied_link") != _signature(params):
        st.session_state.applied_link = _signature(params)
        state.fresh = True
        for problem in state.problems + _restore_inputs(ws, state):
            st.error(problem)
    return state


def _restore_inputs(ws: Workspace, state: share.SharedState) -> list[str]:
    problems = []
    spec = state.spec
    if spec is not None and spec.kind == "class":
        st.session_state.forget_kind = FORGET_KINDS[0]
        st.session_state.forget_class = spec.classes[0]
        if len(spec.classes) > 1:
            problems.append(f"The Unlearn page forgets one class at a time; class {spec.classes[0]} of "
                            f"{list(spec.classes)} is selected.")
    elif spec is not None:
        st.session_state.forget_kind = FORGET_KINDS[1]
        percent = min(99, max(1, round(spec.fraction * 100)))
        st.session_state.forget_percent = percent
        if abs(percent - spec.fraction * 100) > 1e-9:
            problems.append(f"The Unlearn page forgets whole percents; {spec.fraction:g} became {percent} %.")
    if state.seed is not None or spec is not None:
        st.session_state.forget_seed = state.seed if state.seed is not None else spec.seed
    if state.method is not None:
        st.session_state.method = state.method
        scenario = "random"
        if spec is not None:
            try:
                scenario = make_forget_split(ws.data.train.labels, spec, ws.data.num_classes).scenario
            except WssclError as exc:
                problems.append(str(exc))
        defaults = vars(ws.method_config(state.method, scenario=scenario))
        for name, value in defaults.items():  # the link's settings on top of the defaults, as its author had them
            st.session_state[f"hp.{state.method}.{scenario}.{name}"] = state.overrides.get(name, value)
    return problems


def write_link(query: dict[str, str | list[str]]) -> str:
    """Put ``query`` into the page's URL (so the address bar is the link to this state) and return the link."""
    wanted = {k: list(v) if isinstance(v, list) else [v] for k, v in query.items()}
    if _link_params() != wanted:
        st.query_params.from_dict(query)
    st.session_state.applied_link = _signature(wanted)
    base = (st.context.url or "").split("?")[0]
    return f"{base}?{urlencode(query, doseq=True)}"


def run_query(record: RunRecord) -> dict[str, str | list[str]]:
    """The link parameters that reproduce ``record``'s choices."""
    return share.to_query(record.request.spec, record.request.method, record.request.overrides, record.split.scenario)
