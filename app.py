"""WSS-CL unlearning studio: navigation, the run-status sidebar, and the Home page.

Streamlit treats a pages/ folder as its older folder navigation until app.py has run once, so a
first visitor arriving on a deep link (e.g. /model) skips app.py: each page then sends the visit
through app.py (``session.enter_page``), which installs this navigation and forwards it.

The Home page draws its text and button before importing torch and the library (``pages.session``):
the first visit after the server starts pays that import (~2.5 s on a 2-core CPU) after Home is on screen.
"""

import os

# Idle OpenMP threads sleep instead of spinning (read when torch loads, after Home is on screen): the
# run's training threads then share the CPU with the web server, the browser and the UMAP worker.
# On a 2-core CPU, training on both cores, the default demo took 28.3-29.2 s with sleeping threads and
# 30.7 s with spinning ones (34.4 s on one training thread; docs/BENCHMARKS.md, Studio timings).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import streamlit as st  # noqa: E402

from pages import navigation  # noqa: E402

st.set_page_config(page_title="WSS-CL unlearning studio", page_icon=":material/cleaning_services:", layout="wide")


def home() -> None:
    st.title("WSS-CL unlearning studio")
    st.markdown(
        "**Machine unlearning** removes the influence of chosen training samples — the *forget set* — from a "
        "trained classifier, without retraining from scratch. The gold standard is **Retrain**: a model "
        "trained on the remaining data only. A good unlearning method gets close to Retrain in accuracy on "
        "the forget set (UA), the retained data (RA) and the test set (TA), and in how often a membership-"
        "inference attack still recognises the forgotten samples (MIA), in a fraction of the time.")
    st.markdown(
        "**WSS-CL** (weight-saliency soft-guided contrastive learning) does it in two stages. *Stage 1* pushes "
        "the model's output on forget samples towards the uniform distribution (KL divergence). *Stage 2* "
        "alternates a contrastive round, which pulls each forget sample towards an augmented view of itself and "
        "away from retained samples, with a cross-entropy round on retained data. A **soft saliency mask** "
        "computed from the forget-set gradients scales every update, so weights that matter most for the "
        "forget set move most.")
    st.image("assets/diagram.svg", caption="WSS-CL: forgetting, then masked adversarial fine-tuning")
    device = st.empty()

    st.subheader("Run the default demo")
    st.write("Forget one class of the shipped Fashion-MNIST subset from the shipped model with WSS-CL's "
             "default settings, then compare with the original on the Compare page. No choices needed.")
    clicked = st.button("Run the default demo", type="primary", disabled=navigation.run_in_progress())

    from pages import cache, session  # torch and the library, once Home is on screen

    session.start_up()
    device.info(f"Computing on: **{session.device_text()}**")
    if clicked and session.start_run(session.default_request()):
        st.switch_page("pages/unlearn.py")
    ws = session.workspace(required=False)
    if ws is not None:  # also loads the chart library in the browser before the first run's live charts
        forgotten = session.DEFAULT_FORGET.classes[0]
        st.plotly_chart(cache.stage1_example(ws, forgotten), key="stage1_example")
        st.caption("Stage 1 moves the forget set's outputs from the original model's confident answer to "
                   "the uniform distribution over the classes that remain; stage 2 then repairs the retained data.")
    from wsscl_core.studio.jobs import preload_run_imports

    preload_run_imports()  # while Home is read, not after Run


pages = [
    st.Page(home, title="Home", icon=":material/home:", default=True),
    st.Page("pages/model.py", title="Model", icon=":material/model_training:"),
    st.Page("pages/unlearn.py", title="Unlearn", icon=":material/cleaning_services:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("pages/methods.py", title="Methods", icon=":material/leaderboard:"),
    st.Page("pages/saliency.py", title="Saliency", icon=":material/local_fire_department:"),
]
page = st.navigation(pages)
st.session_state[navigation.NAVIGATION_READY] = True
navigation.forward_deep_link()
if "jobs" in st.session_state:  # a run was started, so the library is loaded
    from pages import widgets

    widgets.sidebar_status()
page.run()
