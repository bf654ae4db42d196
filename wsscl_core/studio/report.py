"""The downloadable record of a run: checkpoint metadata and a self-contained HTML report."""

from __future__ import annotations

import html
import time
from typing import Sequence

import pandas as pd
import plotly.graph_objects as go

from ..runs import result_metadata
from ..workspace import Workspace
from .jobs import RunRecord


def checkpoint_metadata(ws: Workspace, record: RunRecord) -> dict:
    """Metadata for the unlearned checkpoint, from the run pipeline's one writer."""
    return result_metadata(ws, record.unlearned)


def html_report(ws: Workspace, record: RunRecord, table: pd.DataFrame, figures: Sequence[go.Figure]) -> str:
    """One HTML file with the run's settings, metrics table and figures (plotly.js inlined, so it works offline)."""
    settings = {
        "Dataset": ws.data.name, "Model": ws.model_name, "Forget set": f"{record.split.spec} "
        f"({record.split.num_forget} images; {record.split.num_retain} retained)",
        "Method": record.unlearned.label, "Hyperparameters": ", ".join(f"{k}={v}" for k, v in record.unlearned.config.items()),
        "Unlearning time (RTE)": f"{record.unlearned.rte_s:.1f} s", "Generated": time.strftime("%Y-%m-%d %H:%M"),
    }
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in settings.items())
    charts = "".join(fig.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False)
                     for i, fig in enumerate(figures))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Unlearning report — run {record.number}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:collapse}}
th,td{{border:1px solid #ccc;padding:4px 8px;text-align:left}}</style></head>
<body><h1>Unlearning report — {html.escape(record.title)}</h1>
<h2>Settings</h2><table>{rows}</table>
<h2>Metrics (%)</h2>{table.to_html(na_rep="—", float_format=lambda v: f"{v:.2f}")}
<p>UA = 100 − forget accuracy, RA = retain accuracy, TA = test accuracy, MIA = MIA-efficacy;
Avg.Gap = mean |difference| to Retrain over the four (lower is better); RTE = unlearning time.</p>
<h2>Figures</h2>{charts}
</body></html>"""
