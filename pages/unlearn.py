"""Unlearn: choose what to forget and how, then watch the run live."""

import streamlit as st

from pages import cache, session, widgets
from wsscl_core.data import ForgetSpec, make_forget_split
from wsscl_core.errors import WssclError
from wsscl_core.methods import METHODS
from wsscl_core.studio import plots, share
from wsscl_core.studio.jobs import UnlearnRequest

session.enter_page(__file__)

st.title("Unlearn")
ws = session.workspace()
session.apply_link()
classes = ws.data.classes
st.caption(f"Model: {ws.model_name} on {ws.data.name} ({len(ws.data.train)} train images, {len(classes)} classes)")

st.subheader("1. What to forget")
kind = st.radio("Forget", session.FORGET_KINDS, horizontal=True, key="forget_kind", persist_state="session")
if kind == session.FORGET_KINDS[0]:
    st.image(cache.class_thumbnails(ws), caption=classes, width=64)
    left, right = st.columns([4, 1])
    forgotten = left.radio("Class to forget", range(len(classes)), format_func=lambda i: classes[i], horizontal=True,
                           index=session.DEFAULT_FORGET.classes[0], key="forget_class", persist_state="session")
    seed = right.number_input("Seed", min_value=0, value=0, step=1, key="forget_seed", persist_state="session",
                              help="Seeds the run (and, for a random forget set, which images are drawn).")
    spec = ForgetSpec("class", (forgotten,), seed=int(seed))
else:
    left, right = st.columns(2)
    percent = left.slider("Share of the train set to forget (%)", min_value=1, max_value=99, value=10,
                          key="forget_percent", persist_state="session",
                          help="Both the forget and the retain set must be non-empty.")
    seed = right.number_input("Seed", min_value=0, value=0, step=1, key="forget_seed", persist_state="session",
                              help="Seeds the run (and, for a random forget set, which images are drawn).")
    spec = ForgetSpec("random", fraction=percent / 100, seed=int(seed))

try:
    split = make_forget_split(ws.data.train.labels, spec, ws.data.num_classes)
except WssclError as exc:
    st.error(str(exc))
    st.stop()
st.write(f"Forget set: **{split.num_forget}** images · retain set: **{split.num_retain}** images")
st.plotly_chart(plots.forget_histogram(ws.data.train.labels, split.forget, classes), key="forget_histogram")

st.subheader("2. How to unlearn")
method = st.selectbox("Method", list(METHODS), index=list(METHODS).index(session.default_method()),
                      format_func=lambda m: f"{METHODS[m].label} — {METHODS[m].summary}", key="method",
                      persist_state="session")
defaults_for = "forgetting a whole class" if split.scenario == "class" else "random forgetting"
with st.expander(f"Hyperparameters (the method's defaults for {defaults_for})"):
    overrides = widgets.config_inputs(ws.method_config(method, scenario=split.scenario),
                                      f"hp.{method}.{split.scenario}")
shipped = method != "retrain" and session.has_reference(spec, spec.seed)
with_retrain = False
if shipped:
    st.info("Retrain for this forget set ships with the studio (trained from scratch on the retain set with the "
            "original's recipe), so the result comes with its Avg.Gap to Retrain.", icon=":material/verified:")
elif method != "retrain":
    with_retrain = st.checkbox(
        "Also run Retrain (the gold standard; needed for Avg.Gap, takes as long as training the original)",
        key="with_retrain", persist_state="session")
    note = session.references_note()
    if note:
        st.caption(note)

link = session.write_link(share.to_query(spec, method, overrides, split.scenario))
widgets.share_box(link, "this setup")

st.subheader("3. Run")
jobs = session.jobs()
if st.button("Run", type="primary", key="run"):
    session.start_run(UnlearnRequest(spec, method, overrides, with_retrain, spec.seed, session.workspace_key()))

job = jobs.current
if job is not None and job.kind == "unlearn":
    widgets.job_panel(job)
    if job.status == "done":
        st.page_link("pages/compare.py", label="See the result on Compare", icon=":material/compare:")
        session.prefetch_views(job.result)
