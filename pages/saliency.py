"""Saliency: which weights the forget set's gradients single out, as hard (SalUn) and soft (WSS-CL) masks."""

import streamlit as st

from pages import shared
from wsscl_core.studio import plots
from wsscl_core.data import ForgetSpec, make_forget_split
from wsscl_core.errors import WssclError
from wsscl_core.methods import make_config
from wsscl_core.saliency import SOFT_NORMALISATIONS

shared.enter_page(__file__)

st.title("Saliency")
st.write("Gradients of the forget-set loss at the original model say which weights encode the forget set. "
         "The hard mask lets only the top share of them move; WSS-CL's soft mask scales every weight's update "
         "by |2σ(g) − 1|.")
ws = shared.workspace()
runs = shared.runs()
spec = runs[-1].request.spec if runs else shared.DEFAULT_FORGET
st.caption(f"Forget set: {spec} (the latest run's, or the default)")
try:
    split = make_forget_split(ws.data.train.labels, spec, ws.data.num_classes)
except WssclError as exc:
    st.error(str(exc))
    st.stop()
wsscl_normalisation = make_config("wsscl", scenario=split.scenario).mask_normalisation
left, right = st.columns(2)
ratio = left.slider("Hard mask: share of weights selected", 0.05, 0.95, 0.5, 0.05, key="saliency_ratio", persist_state="session")
normalisation = right.selectbox("Soft mask normalisation", list(SOFT_NORMALISATIONS),
                                index=list(SOFT_NORMALISATIONS).index(wsscl_normalisation),
                                format_func=lambda n: f"{n} — {SOFT_NORMALISATIONS[n]}", key="saliency_norm",
                                help=f"WSS-CL's default for this forget set: {wsscl_normalisation}", persist_state="session")
result = shared.saliency(shared.workspace_key(), str(spec), ratio, normalisation, ws, split)

names = [layer.name for layer in result.layers]
layer = result.layers[names.index(st.selectbox("Layer", names, key="saliency_layer"))]
st.caption(f"{layer.name}: shape {tuple(layer.shape)}, {layer.fraction_selected:.1%} selected by the hard mask, "
           f"mean soft value {layer.mean_soft:.3f}")
st.plotly_chart(plots.saliency_heatmaps(layer.heatmap_hard, layer.heatmap_soft, layer.name), key="heatmaps")
st.plotly_chart(plots.saliency_fraction_bar(names, [l.fraction_selected for l in result.layers],
                                            [l.mean_soft for l in result.layers]), key="fractions")
st.plotly_chart(plots.soft_histogram(result.soft), key="soft_hist")
