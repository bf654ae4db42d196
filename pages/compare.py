"""Compare: the original, the unlearned model and Retrain, side by side."""

import streamlit as st

from pages import cache, session, widgets
from wsscl_core.checkpoints import checkpoint_bytes
from wsscl_core.methods import METHODS
from wsscl_core.studio import compare, plots
from wsscl_core.studio.jobs import UnlearnRequest
from wsscl_core.studio.references import SHIPPED_LABEL
from wsscl_core.studio.report import checkpoint_metadata, html_report

session.enter_page(__file__)

st.title("Compare")
ws = session.workspace()
link = session.apply_link()
runs = session.runs()
jobs = session.jobs()
if not runs:
    if link.spec is not None and link.method is not None:
        label = METHODS[link.method].label
        st.info(f"This link compares **{label}** on **{link.spec}** (seed {link.spec.seed}) with the original and "
                "Retrain. Nothing has run yet in this session.")
        if st.button(f"Run {label} on {link.spec}", type="primary", key="run_link", disabled=jobs.busy):
            session.start_run(UnlearnRequest(link.spec, link.method, link.overrides, False, link.spec.seed,
                                             session.workspace_key()))
        if jobs.current is not None and jobs.current.kind == "unlearn":
            widgets.job_panel(jobs.current)
    else:
        st.info("No finished run on this model yet in this session.")
        st.page_link("pages/unlearn.py", label="Start one on the Unlearn page", icon=":material/cleaning_services:")
    st.stop()

by_number = {r.number: r for r in runs}
numbers = list(by_number)[::-1]
wanted = next((r.number for r in reversed(runs) if link.spec is not None and r.request.spec == link.spec
               and (link.method is None or r.request.method == link.method)), numbers[0])
record = by_number[st.selectbox("Run", numbers, index=numbers.index(wanted), format_func=lambda n: by_number[n].title,
                                key="compare_run")]
same_split = [r for r in runs if compare.run_key(r) == compare.run_key(record)]
retrain = compare.retrain_for(record, runs)
shipped = retrain is not None and retrain.label == SHIPPED_LABEL

st.subheader("Metrics (%)")
metrics_slot = st.container()  # filled below, once the original's scores are in: the feature view draws first

st.subheader("Feature space: original, unlearned and Retrain")
selection_key = f"selected-{record.number}"


def embedding_view() -> None:
    """PCA at once; UMAP (queued in its worker) replaces it when ready. Clicking a point shows that image."""
    sample = cache.run_sample(ws, record, retrain)
    future = cache.run_views(ws, record, retrain).umap
    umap_done = future.done() and future.exception() is None
    embedding = future.result() if umap_done else cache.pca_embedding(ws, record, retrain)
    selected = st.session_state.get(selection_key)
    figure = plots.embedding_figure(embedding, sample.titles, sample.labels, sample.is_forget,
                                    {n: v.predictions for n, v in sample.views.items()}, ws.data.classes, selected)
    event = st.plotly_chart(figure, key=f"embedding-{record.number}", on_select="rerun", selection_mode="points")
    points = (event or {}).get("selection", {}).get("points", [])
    if points and points[0].get("customdata") is not None:
        position = int(points[0]["customdata"][0])
        if position != selected:
            st.session_state[selection_key] = position
            st.rerun(scope="fragment")
    if future.done() and future.exception() is not None:
        st.warning(f"UMAP is not available ({future.exception()}); PCA is shown.")
    elif not umap_done:
        st.caption("PCA view; UMAP is being computed and will replace it automatically.")
    st.caption("**What to look for.** Colour is the true class, × the forget set. Do the forget images leave their "
               "class's cluster under the unlearned model, and towards which classes? Retrain shows where a model "
               "that never saw them puts them. If the unlearned panel looks like the original, the features kept "
               "the class and only the output layer moved (the confusion matrix below then shows the change). "
               "Retrain is a separately trained network: its features are mapped into the original's feature space "
               "by a linear map fitted on retained images only. Click a point to see the image under all three "
               "models; click a class in the legend to hide it.")
    neighbourhood = cache.forget_neighbourhood(ws, record, retrain)
    if not neighbourhood.empty:
        widgets.table(neighbourhood)
        st.caption("For each forget image, the class of most of its 10 nearest retained images in each model's feature "
                   "space. A model that forgot the images in its features no longer puts them among their own class; "
                   "Retrain shows where a model that never saw them puts them.")
    if selected is not None and selected < len(sample.index):
        detail = compare.point_detail(ws, sample, selected)
        left, right = st.columns([1, 4])
        left.image(cache.to_pil(detail.image, 112),
                   caption=f"train image #{detail.train_index}: {ws.data.classes[detail.label]}"
                           f" ({'forget set' if detail.is_forget else 'retained'})")
        left.write("\n".join(f"- {name}: **{ws.data.classes[p]}**" for name, p in detail.predictions.items()))
        right.plotly_chart(plots.probabilities_figure(detail.probabilities, ws.data.classes, detail.label),
                           key=f"point-{record.number}")
    if st.session_state.get("embedding_polling") and umap_done:
        st.session_state.embedding_polling = False
        st.rerun()


umap_pending = not cache.run_views(ws, record, retrain).umap.done()
st.session_state.embedding_polling = umap_pending
st.fragment(embedding_view, run_every=1.0 if umap_pending else None)()

with metrics_slot:
    original = cache.original_evaluation(ws, record.split, record.request.seed)
    rows = {"Original": (original, None), f"#{record.number} {record.unlearned.label}": (record.unlearned.evaluation,
                                                                                         record.unlearned.rte_s)}
    if retrain is not None and not record.is_retrain:
        rows[retrain.label] = (retrain.evaluation, retrain.rte_s)
    for earlier in same_split:
        if earlier is not record:
            rows[f"#{earlier.number} {earlier.unlearned.label}"] = (earlier.unlearned.evaluation, earlier.unlearned.rte_s)
    table = plots.metrics_table(rows, retrain.evaluation if retrain is not None else None,
                                retrain.rte_s if retrain is not None else None)
    widgets.table(table)
    st.caption("UA = 100 − accuracy on the forget set; RA on the retain set; TA on the test set; MIA = share of forget "
               "samples a membership-inference attack calls non-members. Loss-attack AUC = how well a threshold on the "
               "per-sample loss tells forget samples from test samples (0.5: they look unseen; Retrain's value is the "
               "target). Avg.Gap = mean distance to Retrain over UA, RA, TA and MIA (lower is better). RTE = unlearning "
               "time." + (" Retrain is the shipped reference for this forget set (same recipe as the original); its RTE "
                          "was measured when it was built." if shipped else ""))
    if retrain is None:
        note = session.references_note()
        st.info("No Retrain for this forget set yet: Avg.Gap and the Retrain panels need it." + (f" {note}" if note else ""))
        if st.button("Run Retrain on this forget set", key="compare_retrain", disabled=jobs.busy):
            session.start_run(UnlearnRequest(record.request.spec, "retrain", {}, False, record.request.seed,
                                             session.workspace_key()))

st.subheader("Test-set confusion")
choices = ["unlearned", "Retrain"] if retrain is not None and not record.is_retrain else ["unlearned"]
after_model = st.radio("After", choices, horizontal=True)
after = record.unlearned if after_model == "unlearned" else retrain
st.plotly_chart(plots.confusion_figure(original.confusion_test, after.evaluation.confusion_test, ws.data.classes,
                                       after.label), key="confusion")
st.caption("**What to look for.** The forgotten class's row: where do its test images go now, and is that where "
           "Retrain sends them? Off-diagonal changes elsewhere are damage to the classes that were kept.")

st.subheader("Membership inference")
mia_rows = {"Original": original, record.unlearned.label: record.unlearned.evaluation}
if retrain is not None and not record.is_retrain:
    mia_rows[retrain.label] = retrain.evaluation
st.plotly_chart(plots.mia_figure(mia_rows), key="mia")
st.caption("**What to look for.** The forget set's confidences (orange) should look like Retrain's: like the test "
           "images the model never saw (teal), not like the retained ones it trained on (blue).")

st.subheader("Test accuracy per class (%)")
st.dataframe(plots.per_class_table({name: ev for name, (ev, _) in rows.items()}, ws.data.classes,
                                   record.split.spec.classes))

st.subheader("Share and download")
widgets.share_box(session.write_link(session.run_query(record)), "this comparison")
left, right = st.columns(2)
left.download_button("Unlearned checkpoint (.pt)", lambda: checkpoint_bytes(
    record.unlearned.model, checkpoint_metadata(ws, record)), file_name=f"unlearned_run{record.number}.pt",
    mime="application/octet-stream", icon=":material/download:")
right.download_button("Report (HTML)", lambda: html_report(ws, record, table, [
    plots.confusion_figure(original.confusion_test, record.unlearned.evaluation.confusion_test, ws.data.classes,
                           record.unlearned.label), plots.mia_figure(mia_rows)]),
    file_name=f"unlearning_report_run{record.number}.html", mime="text/html", icon=":material/description:")
