"""Compare: the original, the unlearned model and Retrain, side by side."""

import streamlit as st

from pages import shared
from wsscl_core.studio import embed, plots
from wsscl_core.checkpoints import checkpoint_bytes
from wsscl_core.studio.report import checkpoint_metadata, html_report

shared.enter_page(__file__)

st.title("Compare")
ws = shared.workspace()
runs = shared.runs()
if not runs:
    st.info("No finished run on this model yet in this session.")
    st.page_link("pages/unlearn.py", label="Start one on the Unlearn page", icon=":material/cleaning_services:")
    st.stop()

by_number = {r.number: r for r in runs}
record = by_number[st.selectbox("Run", list(by_number)[::-1], format_func=lambda n: by_number[n].title,
                                key="compare_run")]
same_split = [r for r in runs if r.request.spec == record.request.spec]
retrain = record.retrain or next((r.retrain for r in reversed(same_split) if r.retrain is not None), None)
original = shared.original_evaluation(shared.workspace_key(), str(record.request.spec), record.request.seed, ws,
                                      record.split)

st.subheader("Metrics (%)")
rows = {"Original": (original, None), f"#{record.number} {record.unlearned.label}": (record.unlearned.evaluation,
                                                                                     record.unlearned.rte_s)}
if retrain is not None:
    rows["Retrain"] = (retrain.evaluation, retrain.rte_s)
for earlier in same_split:
    if earlier is not record:
        rows[f"#{earlier.number} {earlier.unlearned.label}"] = (earlier.unlearned.evaluation, earlier.unlearned.rte_s)
table = plots.metrics_table(rows, retrain.evaluation if retrain is not None else None,
                            retrain.rte_s if retrain is not None else None)
st.dataframe(table)
st.caption("UA = 100 − accuracy on the forget set; RA on the retain set; TA on the test set; MIA = share of forget "
           "samples a membership-inference attack calls non-members. Loss-attack AUC = how well a threshold on the "
           "per-sample loss tells forget samples from test samples (0.5: they look unseen; Retrain's value is the "
           "target). Avg.Gap = mean distance to Retrain over UA, RA, TA and MIA (lower is better). RTE = unlearning "
           "time." + ("" if retrain else " Run with “Also run Retrain” to get Avg.Gap."))

st.subheader("Feature space before and after")


def embedding_view() -> None:
    """PCA at once; switches to UMAP (one space fitted on the original) as soon as UMAP has warmed up."""
    key = shared.workspace_key()
    sample = shared.sample_views(key, record.number, ws, record)
    projection = "umap" if embed.umap_ready() else "pca"
    embedding = shared.run_embedding(key, record.number, projection, ws, record)
    titles = {"before": "original", "after": record.unlearned.label, "retrain": "Retrain"}
    titles = {name: titles[name] for name in sample["views"]}
    predictions = {name: view.predictions for name, view in sample["views"].items()}
    st.plotly_chart(plots.embedding_figure(embedding, titles, sample["labels"], sample["is_forget"], predictions,
                                           ws.data.classes), key="embedding")
    if projection == "pca":
        st.caption("PCA view; UMAP is still warming up and will replace it automatically.")
    elif st.session_state.get("embedding_polling"):
        st.session_state.embedding_polling = False
        st.rerun()


polling = not embed.umap_ready()
st.session_state.embedding_polling = polling
st.fragment(embedding_view, run_every=2.0 if polling else None)()

st.subheader("Test-set confusion")
after_model = st.radio("After", ["unlearned", "Retrain"] if retrain is not None else ["unlearned"], horizontal=True)
after = record.unlearned if after_model == "unlearned" else retrain
st.plotly_chart(plots.confusion_figure(original.confusion_test, after.evaluation.confusion_test, ws.data.classes,
                                       after.label), key="confusion")

st.subheader("Membership inference")
mia_rows = {"Original": original, record.unlearned.label: record.unlearned.evaluation}
if retrain is not None:
    mia_rows["Retrain"] = retrain.evaluation
st.plotly_chart(plots.mia_figure(mia_rows), key="mia")

st.subheader("Test accuracy per class (%)")
st.dataframe(plots.per_class_table({name: ev for name, (ev, _) in rows.items()}, ws.data.classes,
                                   record.split.spec.classes))

st.subheader("Downloads")
left, right = st.columns(2)
left.download_button("Unlearned checkpoint (.pt)", lambda: checkpoint_bytes(
    record.unlearned.model, checkpoint_metadata(ws, record)), file_name=f"unlearned_run{record.number}.pt",
    mime="application/octet-stream", icon=":material/download:")
right.download_button("Report (HTML)", lambda: html_report(ws, record, table, [
    plots.confusion_figure(original.confusion_test, record.unlearned.evaluation.confusion_test, ws.data.classes,
                           record.unlearned.label), plots.mia_figure(mia_rows)]),
    file_name=f"unlearning_report_run{record.number}.html", mime="text/html", icon=":material/description:")
