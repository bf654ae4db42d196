"""Model: the original model θo and its dataset — shipped, trained here, or uploaded."""

import streamlit as st

from pages import cache, session, widgets
from wsscl_core.studio import plots
from wsscl_core.data import DATASETS, DEFAULT_DATASET
from wsscl_core.engine import TrainRecipe
from wsscl_core.errors import WssclError
from wsscl_core.studio.jobs import train_work
from wsscl_core.models import MODEL_HELP, MODELS

session.enter_page(__file__)

st.title("Model")
jobs = session.jobs()

job = jobs.current
if job is not None and job.kind == "train" and job.status == "done" and st.session_state.get("adopted") != job.number:
    st.session_state.adopted = job.number
    session.use_workspace(job.result, f"trained:{job.number}")

ws = session.workspace(required=False)
if ws is not None:
    test_accuracy, per_class = cache.test_scores(ws)
    cols = st.columns(4)
    cols[0].metric("Dataset", ws.data.name)
    cols[1].metric("Architecture", ws.model_name)
    cols[2].metric("Train / test images", f"{len(ws.data.train)} / {len(ws.data.test)}")
    cols[3].metric("Test accuracy", f"{test_accuracy:.1f} %")
    st.plotly_chart(plots.per_class_bar(per_class, ws.data.classes), key="per_class")
    images, captions = cache.test_samples(ws)
    st.caption("Test images with the model's prediction")
    st.image(images, caption=captions, width=84)

st.subheader("Use another original model")
shipped, train, upload = st.tabs(["Shipped model", "Train a new one", "Upload a checkpoint"])

with shipped:
    st.write("The shipped compact CNN, trained on the shipped class-balanced Fashion-MNIST subset.")
    if st.button("Use the shipped model", disabled=st.session_state.get("workspace_key") == "default"):
        try:
            session.use_workspace(cache.default_workspace(), "default")
            st.rerun()
        except WssclError as exc:
            st.error(str(exc))

with train:
    left, right = st.columns(2)
    dataset_name = left.selectbox("Dataset", list(DATASETS), index=list(DATASETS).index(DEFAULT_DATASET),
                                  key="train_dataset", persist_state="session")
    model_name = right.selectbox("Architecture", list(MODELS), format_func=lambda m: f"{m} — {MODEL_HELP[m]}",
                                 key="train_model", persist_state="session")
    with st.expander("Training recipe"):
        recipe_values = widgets.config_inputs(TrainRecipe(), "recipe")
    if st.button("Train", type="primary", key="train_button"):
        try:
            jobs.start("train", f"Training {model_name} on {dataset_name}",
                       train_work(cache.dataset(dataset_name), model_name, TrainRecipe(**recipe_values)))
        except (WssclError, TypeError, ValueError) as exc:
            st.error(str(exc))
    if jobs.current is not None and jobs.current.kind == "train":
        widgets.job_panel(jobs.current)

with upload:
    limit_mb = st.get_option("server.maxUploadSize")
    left, right = st.columns(2)
    upload_dataset = left.selectbox("Dataset it was trained on", list(DATASETS),
                                    index=list(DATASETS).index(DEFAULT_DATASET), key="upload_dataset", persist_state="session")
    upload_model = right.selectbox("Architecture", ["detect from the file", *MODELS], key="upload_model", persist_state="session")
    uploaded = st.file_uploader(f"Checkpoint (.pt / .pth, at most {limit_mb} MB)", type=["pt", "pth"],
                                help=f"Files above {limit_mb} MB are refused (server.maxUploadSize). Loaded with "
                                     "weights_only=True: tensors and plain data only, never code.")
    if uploaded is not None and st.button("Load this checkpoint", type="primary"):
        architecture = None if upload_model == "detect from the file" else upload_model
        if session.adopt_upload(uploaded.getvalue(), upload_dataset, architecture):
            st.rerun()
