"""Widgets every page shares: inputs for a config dataclass, the live run panel with its Stop button,
the run status in the sidebar, and the box holding a shareable link."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from pages import session
from wsscl_core.methods import literal_choices, settable_fields
from wsscl_core.studio import plots
from wsscl_core.studio.jobs import Job, RunRecord

SIDEBAR_POLL_S = 2.5  # the sidebar's run status; a page with a live view polls that view as well, and
# the sidebar's redraws every 1.0 s cost the default demo about 1 s on a 2-core CPU (27.5-28.1 s at 2.5 s).
POLL_S = 0.8  # live-view refresh; measured 0.80 s median, 0.92 s max between updates. At 0.3 s the
# redraws took so much CPU that the default demo ended 31.5 s after the click instead of 22.6 s.
CHART_REFRESH_S = 3.2  # the live charts are rebuilt every fourth poll: drawing them is most of the browser's
# work (at every other poll, 1.6 s, the browser used 1.5-2.0 s more CPU per default demo on a 2-core CPU, and
# the demo ended 0.6-1.4 s later on average: docs/BENCHMARKS.md, Studio timings)
FIRST_POINT_WAIT_S = 0.6  # how long a new run's live view waits for its first progress event before drawing


def config_inputs(config: Any, key_prefix: str) -> dict[str, Any]:
    """One input per field of a config dataclass (a method's, or the training recipe), defaulting to its value."""
    values: dict[str, Any] = {}
    choices = literal_choices(type(config))  # fields with a fixed set of values get a select box
    for f in settable_fields(config):
        default, key = getattr(config, f.name), f"{key_prefix}.{f.name}"
        if isinstance(default, bool):
            values[f.name] = st.checkbox(f.name, default, key=key, persist_state="session")
        elif isinstance(default, int):
            values[f.name] = st.number_input(f.name, value=default, step=1, key=key, persist_state="session")
        elif isinstance(default, float):
            # four significant digits on screen (a tuned 0.0034963238935113465 reads 0.003496); the widget keeps
            # the exact value until it is edited, and the report and links carry it in full
            values[f.name] = st.number_input(f.name, value=default, format="%.4g", step=None, key=key,
                                             persist_state="session")
        elif f.name in choices:
            options = list(choices[f.name])
            values[f.name] = st.selectbox(f.name, options, index=options.index(default), key=key,
                                          persist_state="session")
        else:
            values[f.name] = st.text_input(f.name, str(default), key=key, persist_state="session")
    return values


def _eta(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.0f} s"


def _rerun_once_after(job: Job) -> None:
    """When a polled run has ended, rerun the whole page once so it stops polling and shows the result."""
    if not job.running and st.session_state.get("seen_end") != job.number:
        st.session_state.seen_end = job.number
        st.rerun()


def run_summary(record: RunRecord) -> None:
    """A finished run's metrics, with its Avg.Gap to Retrain when there is one (shipped or run)."""
    scores = record.unlearned.scores()
    cols = st.columns(5)
    for col, key in zip(cols, ("UA", "RA", "TA", "MIA")):
        retrain = f"Retrain {record.retrain.scores()[key]:.1f}" if record.retrain is not None else None
        col.metric(key, f"{scores[key]:.1f} %", delta=retrain, delta_color="off")
    gap = record.gap()
    cols[4].metric("Avg.Gap to Retrain", "—" if gap is None else f"{gap:.2f}",
                   help="Mean distance to Retrain over UA, RA, TA and MIA (lower is better)."
                        + (" Retrain is the shipped reference for this forget set." if record.retrain is not None
                           and record.retrain.label.endswith("(shipped)") else ""))


def _live_figures(job: Job):
    """The run's loss and accuracy figures, rebuilt at most every :data:`CHART_REFRESH_S` while it runs (and
    at once while they are empty, and when it ends). Between rebuilds the page sends the same figures again,
    which costs the browser far less than drawing new ones (docs/BENCHMARKS.md, Studio timings)."""
    built = st.session_state.get("live_figures")  # (job number, built at, loss figure, accuracy figure)
    if (built is None or built[0] != job.number or not job.running or not built[2].data
            or time.monotonic() - built[1] >= CHART_REFRESH_S):
        built = (job.number, time.monotonic(), plots.loss_figure(job.events), plots.accuracy_figure(job.events))
        st.session_state.live_figures = built
    return built[2], built[3]


def job_panel(job: Job, stop_label: str = "Stop training") -> None:
    """Live view of a run: phase, progress with ETA, loss and accuracy curves, and a Stop button.

    Polls while the run is going; when it ends, reruns the page once so it can show the result.
    A finished unlearning run shows its metrics and Avg.Gap at once.
    """
    jobs = session.jobs()

    def body() -> None:
        job.touch()
        if job.running and not job.events:  # the first draw then has a point (the first event takes ~0.1–0.4 s)
            job.wait_for_progress(FIRST_POINT_WAIT_S)
        latest = job.latest
        position, total = jobs.batch_position if job is jobs.current else (1, 1)
        batch = f" (run {position} of {total})" if total > 1 else ""
        if job.running:
            cols = st.columns([4, 1])
            fraction = latest.event.fraction_done if latest else 0.0
            eta = latest.event.eta_s if latest else None
            cols[0].progress(min(max(fraction, 0.0), 1.0),
                             text=f"{job.stage}{batch} — {fraction:.0%}, {job.elapsed_s:.0f} s elapsed, ETA {_eta(eta)}")
            if cols[1].button(stop_label, type="primary", key=f"stop-{job.number}"):
                jobs.stop() if job is jobs.current else job.stop()
                st.rerun()
            if jobs.queue and job is jobs.current:
                st.caption("Next: " + ", ".join(item.title for item in jobs.queue))
        elif job.status == "done":
            st.success(f"{job.title} finished in {job.elapsed_s:.1f} s.")
            if job.kind == "unlearn" and isinstance(job.result, RunRecord):
                run_summary(job.result)
        else:
            (st.warning if job.status == "cancelled" else st.error)(job.error)
        for note in job.early_stops():
            st.info(note)
        if latest is not None:
            metrics = {k: v for k, v in latest.event.metrics.items() if k.endswith("_acc")}
            if metrics:
                cols = st.columns(len(metrics))
                for col, (name, value) in zip(cols, metrics.items()):
                    col.metric(name.replace("_acc", " accuracy (batches)"), f"{value:.1f} %")
            left, right = st.columns(2)
            loss, accuracy = _live_figures(job)
            left.plotly_chart(loss, key=f"loss-{job.number}")
            right.plotly_chart(accuracy, key=f"acc-{job.number}")
        _rerun_once_after(job)

    st.fragment(body, run_every=POLL_S if job.running else None)()


def sidebar_status() -> None:
    """The current run's progress on every page; its polling is also the run's heartbeat."""
    jobs = session.jobs()
    job = jobs.current
    if job is None:
        return

    def body() -> None:
        job.touch()
        if job.running:
            fraction = job.latest.event.fraction_done if job.latest else 0.0
            position, total = jobs.batch_position
            batch = f" ({position} of {total})" if total > 1 else ""
            st.progress(min(max(fraction, 0.0), 1.0), text=f"Running{batch}: {job.title}\n\n{job.stage}")
        else:
            st.caption(f"Last run: {job.title} — {job.status}")
        _rerun_once_after(job)

    with st.sidebar:
        st.fragment(body, run_every=SIDEBAR_POLL_S if job.running else None)()


def table(frame) -> None:
    """A metrics table with its empty cells as "—" (texts, right-aligned like numbers)."""
    shown = plots.table_display(frame)
    st.dataframe(shown, column_config={c: st.column_config.TextColumn(alignment="right") for c in shown.columns})


def share_box(link: str, what: str) -> None:
    """The link to this state, to copy (the address bar holds it too)."""
    with st.expander(f"Share {what}", icon=":material/link:"):
        st.code(link, language=None, wrap_lines=True)
        st.caption("Opening this link restores these choices; nothing runs until the button is clicked.")
