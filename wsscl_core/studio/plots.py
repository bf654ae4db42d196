"""Plotly figures and tables built from library results, so the studio's pages stay short.

Colours are explicit and mid-luminance so forget/retain and member/non-member read clearly
on both the light and the dark Streamlit theme.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .embed import Embedding
from .jobs import JobEvent
from .saliency_view import LayerLayout
from ..metrics import METRIC_KEYS, Evaluation, avg_gap

FORGET = "#F76707"   # orange: forget set
RETAIN = "#4C8DF6"   # blue: retain set (members)
TEST = "#12B886"     # teal: test set (non-members)
SERIES = ["#4C8DF6", "#F76707", "#12B886", "#BE4BDB", "#FAB005", "#FA5252", "#15AABF", "#82C91E"]
# One colour per class (Tableau 10: distinct, mid-luminance, readable on light and dark backgrounds).
CLASS_COLOURS = ["#4E79A7", "#F28E2B", "#E15759", "#76B7B2", "#59A14F", "#EDC948", "#B07AA1", "#FF9DA7",
                 "#9C755F", "#BAB0AC"]
HIGHLIGHT = "#D6336C"  # the selected image, in every panel
MISSING = "—"  # an empty table cell (no Retrain, no RTE for the original)
_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.15))
_PANELS = {**_LAYOUT, "margin": dict(l=10, r=10, t=80, b=10)}  # room for a title above subplot titles


def _time_series(events: Sequence[JobEvent], values_of, title: str, y_title: str) -> go.Figure:
    series: dict[str, tuple[list[float], list[float]]] = {}
    for item in events:
        for name, value in values_of(item).items():
            xs, ys = series.setdefault(name, ([], []))
            xs.append(item.at_s)
            ys.append(value)
    fig = go.Figure()
    for i, (name, (xs, ys)) in enumerate(series.items()):
        fig.add_trace(go.Scatter(x=xs, y=ys, name=name, mode="lines+markers", marker_size=4,
                                 line_color=SERIES[i % len(SERIES)]))
    fig.update_layout(title=title, xaxis_title="seconds", yaxis_title=y_title, height=320, **_LAYOUT)
    return fig


def _step_events(events: Sequence[JobEvent]) -> list[JobEvent]:
    return [e for e in events if e.event.kind in ("step", "phase_end")]


def loss_figure(events: Sequence[JobEvent]) -> go.Figure:
    """Each loss term of each phase (KL, contrastive, CE, …) against time."""
    return _time_series(_step_events(events),
                        lambda e: {f"{e.stage} · {e.event.phase_label} · {k}": v
                                   for k, v in e.event.losses.items() if k != "loss" or len(e.event.losses) == 1},
                        "Losses per phase", "loss")


def accuracy_figure(events: Sequence[JobEvent]) -> go.Figure:
    """Running accuracy on forget and retain batches while training."""
    names = {"forget_acc": "forget", "retain_acc": "retain", "train_acc": "train"}
    fig = _time_series(_step_events(events),
                       lambda e: {f"{e.stage} · {names[k]}": v for k, v in e.event.metrics.items() if k in names},
                       "Accuracy on the batches seen (%)", "accuracy %")
    for trace in fig.data:
        trace.line.color = FORGET if "forget" in trace.name else RETAIN if "retain" in trace.name else TEST
    return fig


def metrics_table(rows: dict[str, tuple[Evaluation, float | None]], reference: Evaluation | None,
                  reference_rte_s: float | None = None) -> pd.DataFrame:
    """UA, RA, TA, MIA, loss-attack AUC, Avg.Gap vs Retrain, RTE and RTE / Retrain per model (RTE None for
    the original)."""
    records = []
    for name, (ev, rte_s) in rows.items():
        scores = ev.scores()
        record = {"model": name, **{k: round(scores[k], 2) for k in METRIC_KEYS},
                  "Loss-attack AUC": round(scores["MIA_AUC"], 3)}
        record["Avg.Gap"] = round(avg_gap(scores, reference.scores()), 2) if reference is not None else np.nan
        record["RTE (s)"] = round(rte_s, 1) if rte_s is not None else np.nan
        record["RTE / Retrain"] = (round(rte_s / reference_rte_s, 3) if rte_s is not None and reference_rte_s
                                   else np.nan)
        records.append(record)
    return pd.DataFrame.from_records(records).set_index("model").astype(float)


def table_display(table: pd.DataFrame) -> pd.DataFrame:
    """A table as the texts to show: 2 decimals (3 for AUCs), and "—" for an empty cell, never "None" (a
    table's missing cells are drawn as "None" by the browser's data grid whatever their format says)."""
    shown = pd.DataFrame(index=table.index)
    for column in table.columns:
        values = table[column]
        if pd.api.types.is_numeric_dtype(values):
            pattern = "{:.3f}" if "AUC" in column else "{:.1f}" if column.endswith("(%)") else "{:.2f}"
            shown[column] = [MISSING if pd.isna(v) else pattern.format(v) for v in values]
        else:
            shown[column] = [MISSING if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]
    return shown


def per_class_table(rows: dict[str, Evaluation], classes: Sequence[str], forgotten: Sequence[int] = ()) -> pd.DataFrame:
    """Test accuracy per class (the paper's Table 5 layout); forgotten classes marked *."""
    columns = [f"{c}{' *' if i in forgotten else ''}" for i, c in enumerate(classes)]
    return pd.DataFrame([np.round(ev.per_class_test, 1) for ev in rows.values()], index=list(rows), columns=columns)


def forget_histogram(labels: torch.Tensor, forget: torch.Tensor, classes: Sequence[str]) -> go.Figure:
    """How many images of each class the forget set holds."""
    counts = np.bincount(labels.cpu().numpy()[forget.cpu().numpy()], minlength=len(classes))
    fig = go.Figure(go.Bar(x=list(classes), y=counts, marker_color=FORGET, name="forget"))
    fig.update_layout(title="Forget set per class", height=260, **_LAYOUT)
    return fig


def stage1_target_figure(probabilities: np.ndarray, forgotten: int, classes: Sequence[str]) -> go.Figure:
    """The model's output on one image of a class to forget next to stage 1's target for it:
    uniform over the classes that remain (the forgotten class gets nothing)."""
    target = np.full(len(classes), 1.0 / (len(classes) - 1))
    target[forgotten] = 0.0
    fig = go.Figure([go.Bar(x=list(classes), y=probabilities, name="original model", marker_color=RETAIN),
                     go.Bar(x=list(classes), y=target, name="stage 1 target", marker_color=FORGET)])
    fig.update_layout(title=f"Stage 1 on an image of “{classes[forgotten]}”: output probabilities",
                      barmode="group", yaxis_range=[0, 1], height=300, **_LAYOUT)
    return fig


def per_class_bar(per_class: np.ndarray, classes: Sequence[str]) -> go.Figure:
    fig = go.Figure(go.Bar(x=list(classes), y=per_class, marker_color=RETAIN,
                           text=[f"{v:.1f}" for v in per_class], textposition="outside"))
    fig.update_layout(title="Test accuracy per class (%)", yaxis_range=[0, 110], height=320, **_LAYOUT)
    return fig


def class_colour(c: int) -> str:
    return CLASS_COLOURS[c % len(CLASS_COLOURS)]


def embedding_figure(embedding: Embedding, titles: dict[str, str], labels: np.ndarray, is_forget: np.ndarray,
                     predictions: dict[str, np.ndarray], classes: Sequence[str], selected: int | None = None,
                     ) -> go.Figure:
    """One panel per model in the shared 2-D space, points coloured by true class, forget samples as ×.

    Every point carries its position in the sample as ``customdata[0]`` (what a selection event
    reports); ``selected`` rings that image in every panel. Clicking a class in the legend hides it
    in all panels.
    """
    names = list(titles)
    fig = make_subplots(1, len(names), subplot_titles=[titles[n] for n in names], shared_xaxes=True,
                        shared_yaxes=True, horizontal_spacing=0.02)
    class_names = np.asarray(classes, dtype=object)
    positions = np.arange(len(labels))
    for col, name in enumerate(names, start=1):
        xy, pred = embedding.coords[name], predictions[name]
        for c in np.unique(labels):
            for forget in (False, True):
                mask = (labels == c) & (is_forget == forget)
                if not mask.any():
                    continue
                custom = np.stack([positions[mask], class_names[pred[mask]]], axis=1)
                fig.add_trace(go.Scattergl(
                    x=xy[mask, 0], y=xy[mask, 1], mode="markers", name=str(classes[c]), legendgroup=f"class{c}",
                    showlegend=col == 1 and not forget,
                    marker=dict(color=class_colour(int(c)), size=8 if forget else 5, opacity=0.9 if forget else 0.55,
                                symbol="x" if forget else "circle", line=dict(width=0)),
                    customdata=custom,
                    hovertemplate=(f"{'forget' if forget else 'retain'} · class {classes[c]}<br>"
                                   f"{titles[name]} predicts %{{customdata[1]}}<extra></extra>")), 1, col)
        if col == 1:  # a forget-only class still gets its legend entry, and the × is explained once
            for c in np.unique(labels[is_forget]):
                if not ((labels == c) & ~is_forget).any():
                    fig.add_trace(go.Scattergl(x=[None], y=[None], mode="markers", name=str(classes[c]),
                                               legendgroup=f"class{c}", marker=dict(color=class_colour(int(c)),
                                                                                    size=8)), 1, 1)
            fig.add_trace(go.Scattergl(x=[None], y=[None], mode="markers", name="× = forget set",
                                       marker=dict(color="#868E96", symbol="x", size=9)), 1, 1)
        if selected is not None and 0 <= selected < len(labels):
            fig.add_trace(go.Scatter(x=[xy[selected, 0]], y=[xy[selected, 1]], mode="markers", showlegend=False,
                                     name="selected", hoverinfo="skip",
                                     marker=dict(symbol="circle-open", size=20, color=HIGHLIGHT,
                                                 line=dict(width=3, color=HIGHLIGHT))), 1, col)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(title=f"Penultimate features ({embedding.projection.upper()}, fitted on "
                            f"{titles[embedding.reference]}); colour = true class, × = forget set",
                      height=480, clickmode="event+select", dragmode="pan", **_PANELS)
    return fig


def probabilities_figure(probabilities: dict[str, np.ndarray], classes: Sequence[str], label: int) -> go.Figure:
    """One image's predicted probabilities under each model, grouped by class; its true class marked *."""
    names = [f"{c}{' *' if i == label else ''}" for i, c in enumerate(classes)]
    fig = go.Figure([go.Bar(x=names, y=p, name=model, marker_color=SERIES[i % len(SERIES)],
                            hovertemplate=f"{model}<br>%{{x}}: %{{y:.3f}}<extra></extra>")
                     for i, (model, p) in enumerate(probabilities.items())])
    fig.update_layout(barmode="group", yaxis_range=[0, 1], height=300, yaxis_title="probability",
                      title="Predicted probabilities (* = true class)", **_LAYOUT)
    return fig


def gap_figure(gaps: pd.DataFrame) -> go.Figure:
    """Each run's UA, RA, TA and MIA minus Retrain's, grouped by metric (0 = Retrain); Avg.Gap in the legend."""
    fig = go.Figure()
    for i, (name, row) in enumerate(gaps.iterrows()):
        fig.add_trace(go.Bar(x=list(METRIC_KEYS), y=[row[k] for k in METRIC_KEYS],
                             name=f"{name} (Avg.Gap {row['Avg.Gap']:.2f})", marker_color=SERIES[i % len(SERIES)],
                             text=[f"{row[k]:+.1f}" for k in METRIC_KEYS], textposition="outside",
                             hovertemplate=f"{name}<br>%{{x}} − Retrain's: %{{y:+.2f}}<extra></extra>"))
    fig.add_hline(y=0, line_color="#868E96", line_width=1)
    fig.update_layout(barmode="group", height=380, yaxis_title="difference to Retrain (points)",
                      title="Gap to Retrain per metric (0 = exactly Retrain's value)", **_LAYOUT)
    return fig


def confusion_differences_figure(differences: dict[str, np.ndarray], classes: Sequence[str],
                                 reference: str) -> go.Figure:
    """Test confusion of each run minus the reference's, side by side on one diverging scale."""
    names = list(differences)
    limit = max(1, max(int(np.abs(d).max()) for d in differences.values()))
    fig = make_subplots(1, len(names), subplot_titles=[f"{n} − {reference}" for n in names], horizontal_spacing=0.03)
    for col, name in enumerate(names, start=1):
        d = differences[name]
        fig.add_trace(go.Heatmap(z=d, x=list(classes), y=list(classes), coloraxis="coloraxis", text=d,
                                 texttemplate="%{text}", textfont_size=8,
                                 hovertemplate="true %{y}<br>predicted %{x}<br>Δ %{z}<extra></extra>"), 1, col)
        if col > 1:
            fig.update_yaxes(showticklabels=False, col=col)
    fig.update_layout(coloraxis=dict(colorscale="RdBu", cmid=0, cmin=-limit, cmax=limit,
                                     colorbar=dict(title="Δ count", thickness=10)),
                      height=420, title=f"Test-set confusion minus {reference}'s (rows: true, columns: predicted)",
                      **_PANELS)
    fig.update_yaxes(autorange="reversed")
    return fig


def confusion_figure(before: np.ndarray, after: np.ndarray, classes: Sequence[str],
                     after_title: str = "after") -> go.Figure:
    """Test confusion before and after on one colour scale, and their difference (after − before)."""
    diff = after.astype(int) - before.astype(int)
    limit = max(1, int(np.abs(diff).max()))
    top = int(max(before.max(), after.max()))
    fig = make_subplots(1, 3, subplot_titles=["before", after_title, f"difference ({after_title} − before)"],
                        horizontal_spacing=0.06)
    for col, (matrix, axis) in enumerate(((before, "coloraxis"), (after, "coloraxis"), (diff, "coloraxis2")), start=1):
        fig.add_trace(go.Heatmap(z=matrix, x=list(classes), y=list(classes), coloraxis=axis, text=matrix,
                                 texttemplate="%{text}", textfont_size=9,
                                 hovertemplate="true %{y}<br>predicted %{x}<br>%{z}<extra></extra>"), 1, col)
    fig.update_layout(coloraxis=dict(colorscale="Blues", cmin=0, cmax=top,
                                     colorbar=dict(orientation="h", x=0.33, y=-0.42, len=0.55, thickness=10,
                                                   title="count")),
                      coloraxis2=dict(colorscale="RdBu", cmid=0, cmin=-limit, cmax=limit,
                                      colorbar=dict(orientation="h", x=0.84, y=-0.42, len=0.3, thickness=10,
                                                    title="Δ")),
                      height=520, title="Test-set confusion (rows: true class, columns: predicted)",
                      **{**_PANELS, "margin": dict(l=10, r=10, t=80, b=120)})
    fig.update_yaxes(autorange="reversed")
    fig.update_yaxes(showticklabels=False, col=2)
    fig.update_yaxes(showticklabels=False, col=3)
    return fig


def mia_figure(rows: dict[str, Evaluation]) -> go.Figure:
    """Distributions of the true-label confidence the MIA sees, per model, with its MIA-efficacy."""
    names = list(rows)
    fig = make_subplots(1, len(names), subplot_titles=[f"{n}<br>MIA-efficacy {rows[n].MIA:.1f} %, loss-attack AUC "
                                                       f"{rows[n].MIA_AUC:.3f}" for n in names],
                        shared_yaxes=True, horizontal_spacing=0.04)
    for col, name in enumerate(names, start=1):
        ev = rows[name]
        for group, values, colour in (("forget", ev.conf_forget, FORGET), ("test (non-member)", ev.conf_test, TEST),
                                      ("retain (member)", ev.conf_retain, RETAIN)):
            fig.add_trace(go.Histogram(x=values, name=group, legendgroup=group, showlegend=col == 1,
                                       marker_color=colour, opacity=0.6, histnorm="probability",
                                       xbins=dict(start=0, end=1.0001, size=0.05)), 1, col)
    fig.update_layout(barmode="overlay", height=400, title="Confidence p(true label | x): what the MIA classifier sees",
                      **{**_PANELS, "margin": dict(l=10, r=10, t=100, b=10), "legend": dict(orientation="h", y=-0.3)})
    fig.update_annotations(font_size=12)
    fig.update_xaxes(range=[0, 1], title_text="confidence")
    return fig


def saliency_layer_figure(hard: LayerLayout, soft: LayerLayout, layer: str) -> go.Figure:
    """One layer's hard mask, soft mask and their difference (hard − soft), in the same layout side by side."""
    diff = hard.z - soft.z
    fig = make_subplots(1, 3, subplot_titles=["hard mask (1 moves, 0 frozen)", "soft mask (step scale)",
                                              "hard − soft"], horizontal_spacing=0.05)
    for col, (z, axis) in enumerate(((hard.z, "coloraxis"), (soft.z, "coloraxis"), (diff, "coloraxis2")), start=1):
        fig.add_trace(go.Heatmap(z=z, coloraxis=axis, hoverongaps=False,
                                 hovertemplate="row %{y}, column %{x}: %{z:.3f}<extra></extra>"), 1, col)
    fig.update_layout(coloraxis=dict(colorscale="Viridis", cmin=0, cmax=1,
                                     colorbar=dict(orientation="h", x=0.33, y=-0.4, len=0.6, thickness=10,
                                                   title="mask value")),
                      coloraxis2=dict(colorscale="RdBu_r", cmid=0, cmin=-1, cmax=1,
                                      colorbar=dict(orientation="h", x=0.84, y=-0.4, len=0.3, thickness=10,
                                                    title="hard − soft")),
                      height=520, title=f"Saliency of {layer}: {hard.note}",
                      **{**_PANELS, "margin": dict(l=10, r=10, t=80, b=140)})
    fig.update_yaxes(autorange="reversed")
    if hard.square_cells:  # a grid of kernels: positions are tiles, not indices; the title says how to read it
        for col in (1, 2, 3):
            fig.update_yaxes(scaleanchor=f"x{'' if col == 1 else col}", scaleratio=1, col=col)
        fig.update_xaxes(showticklabels=False)
        fig.update_yaxes(showticklabels=False)
    else:
        fig.update_yaxes(title_text=hard.y_title, col=1)
        fig.update_xaxes(title_text=hard.x_title)
    fig.update_xaxes(showgrid=False, zeroline=False)
    fig.update_yaxes(showgrid=False, zeroline=False)
    return fig


def layer_size_figure(table: pd.DataFrame) -> go.Figure:
    """Per layer: its size, the weights the hard mask selects and the soft mask's sum (log scale),
    with the share of the layer selected written on the bars."""
    layers = list(table.index)
    fig = go.Figure([
        go.Bar(x=layers, y=table["parameters"], name="parameters in the layer", marker_color="#868E96",
               opacity=0.55),
        go.Bar(x=layers, y=table["selected (hard)"], name="selected by the hard mask", marker_color=FORGET,
               text=[f"{v:.0f} %" for v in table["% of layer selected"]], textposition="outside"),
        go.Bar(x=layers, y=table["Σ soft"], name="soft mask: Σ of its values", marker_color=RETAIN),
    ])
    fig.update_layout(barmode="group", yaxis_type="log", yaxis_title="weights (log scale)", height=460,
                      title="Layer sizes and what each mask lets move (label: % of the layer selected)",
                      **{**_LAYOUT, "margin": dict(l=10, r=10, t=80, b=10),
                         "legend": dict(orientation="h", y=1.0, yanchor="bottom", x=0)})
    fig.update_xaxes(tickangle=-30, automargin=True)
    return fig


def soft_histogram(soft: dict[str, torch.Tensor], max_values: int = 200_000) -> go.Figure:
    """Histogram of soft-mask values over all parameters (a fixed random sample of them when there are many)."""
    values = torch.cat([t.flatten().float().cpu() for t in soft.values()]).numpy()
    if len(values) > max_values:
        values = np.random.default_rng(0).choice(values, max_values, replace=False)
    fig = go.Figure(go.Histogram(x=values, nbinsx=50, marker_color=RETAIN))
    fig.update_layout(title="Soft mask values (all parameters)", xaxis_title="mask value", yaxis_title="parameters",
                      yaxis_type="log", height=320, **_LAYOUT)
    return fig
