"""Saliency: which weights the forget set's gradients single out, as hard (SalUn) and soft (WSS-CL) masks."""

import streamlit as st

from pages import cache, session, widgets
from wsscl_core.data import make_forget_split
from wsscl_core.errors import WssclError
from wsscl_core.saliency import SOFT_NORMALISATIONS
from wsscl_core.studio import plots, saliency_view
from wsscl_core.studio.jobs import saliency_work

session.enter_page(__file__)

st.title("Saliency")
st.write("Gradients of the forget-set loss at the original model say which weights encode the forget set. "
         "The hard mask lets only the top share of them move; WSS-CL's soft mask scales every weight's update "
         "by |2σ(g) − 1|.")
ws = session.workspace()
runs = session.runs()
spec = runs[-1].request.spec if runs else session.DEFAULT_FORGET
st.caption(f"Forget set: {spec} (the latest run's, or the default)")
try:
    split = make_forget_split(ws.data.train.labels, spec, ws.data.num_classes)
except WssclError as exc:
    st.error(str(exc))
    st.stop()
wsscl_normalisation = ws.method_config("wsscl", scenario=split.scenario).mask_normalisation
left, right = st.columns(2)
ratio = left.slider("Hard mask: share of weights selected", 0.05, 0.95, 0.5, 0.05, key="saliency_ratio",
                    persist_state="session")
normalisation = right.selectbox("Soft mask normalisation", list(SOFT_NORMALISATIONS),
                                index=list(SOFT_NORMALISATIONS).index(wsscl_normalisation),
                                format_func=lambda n: f"{n} — {SOFT_NORMALISATIONS[n]}", key="saliency_norm",
                                help=f"WSS-CL's default for this forget set: {wsscl_normalisation}",
                                persist_state="session")

# The gradients are the slow part: a background job with progress and Stop. The masks follow from them at once.
jobs = session.jobs()
workspace_id = cache.workspace_hash(ws)
wanted = (workspace_id, str(spec), spec.seed)
gradients = next((g for g in reversed(jobs.results("saliency"))
                  if (g.workspace_id, str(g.spec), g.spec.seed) == wanted), None)
if gradients is None:
    job = jobs.current
    if job is not None and job.kind == "saliency" and job.running:
        widgets.job_panel(job, stop_label="Stop")
    elif jobs.busy:
        st.info("A run is going in this session; the saliency can be computed when it ends.")
    else:
        if job is not None and job.kind == "saliency" and job.status in ("cancelled", "failed"):
            (st.warning if job.status == "cancelled" else st.error)(job.error)
        first_visit = st.session_state.get("saliency_started") != wanted
        if first_visit or st.button("Compute the saliency", type="primary", key="saliency_start"):
            st.session_state.saliency_started = wanted
            try:
                jobs.start("saliency", f"Saliency of {spec}", saliency_work(ws, split, workspace_id))
            except WssclError as exc:
                st.error(str(exc))
            else:
                st.rerun()
    st.stop()

result = cache.saliency_masks(gradients, ratio, normalisation)
table = saliency_view.layer_table(result)
names = list(table.index)
layer = st.selectbox("Layer", names, key="saliency_layer")
row = table.loc[layer]
hard, soft = result.hard[layer], result.soft[layer]
layout = "kernels"
if hard.dim() == 4:
    layout = st.radio("Conv layout", ["kernels", "matrix"], horizontal=True, key="saliency_layout",
                      format_func={"kernels": f"grid of {hard.shape[2]}×{hard.shape[3]} kernels",
                                   "matrix": "out-channels × (in-channels × kernel)"}.get)
st.plotly_chart(plots.saliency_layer_figure(saliency_view.layer_layout(hard, layout),
                                            saliency_view.layer_layout(soft, layout), layer), key="heatmaps")
st.caption("**What to look for.** Left: the weights the hard mask lets move (yellow) and freezes (dark). Middle: the "
           "soft mask's step scale for the same weights. Right: their difference — red where the hard mask moves a "
           "weight more than the soft one would, blue where the soft mask moves a weight the hard mask freezes.")
agree = saliency_view.agreement(hard, soft)
st.markdown(
    f"**{layer}** ({row['shape']}) holds **{int(row['parameters']):,}** of the model's "
    f"{int(table['parameters'].sum()):,} weights (**{row['% of all parameters']:.2f} %**). The hard mask picks the "
    f"top {ratio:.0%} of |g| over *all* weights together, so this layer gets **{row['% of layer selected']:.1f} %** "
    f"selected ({agree.selected:,} weights) — a share that says how its gradients compare with the rest of the "
    f"model, not how much of the model moves.")
st.markdown(
    f"Both masks rank this layer's weights by |g| the same way; they differ in how far each moves. The weights the "
    f"hard mask moves fully get a mean soft step of **{agree.mean_soft_selected:.2f}**; the ones it freezes still get "
    f"**{agree.mean_soft_frozen:.2f}**, which is **{agree.soft_share_on_frozen:.0%}** of the soft mask's total step "
    f"in this layer (the blue cells of the right-hand panel).")
st.plotly_chart(plots.layer_size_figure(table), key="fractions")
st.caption("**What to look for.** Grey is each layer's size. A tall orange share on a short grey bar (a first conv "
           "layer) is a handful of weights; most of what moves sits in the large layers.")
with st.expander("Per-layer table"):
    st.dataframe(table.style.format({"% of all parameters": "{:.2f}", "% of layer selected": "{:.1f}",
                                     "Σ soft": "{:.0f}", "mean soft": "{:.3f}"}))
st.plotly_chart(plots.soft_histogram(result.soft), key="soft_hist")
