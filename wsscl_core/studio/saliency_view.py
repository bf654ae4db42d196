"""Layouts of one layer's saliency masks that keep its structure, and per-layer sizes, for the Saliency page.

Built from the mask tensors themselves (``SaliencyResult.hard`` / ``.soft`` or :func:`masks`), not from
the pooled heatmaps of :func:`wsscl_core.saliency.layer_summaries`:

- a conv weight ``(out, in, k, k)`` as a grid of its k×k kernels (one row per output channel, one
  column per input channel; a single-input layer's kernels wrapped into a near-square grid), or as
  the matrix out-channels × (in-channels × k·k), with a blank column between input channels;
- a linear weight as its matrix; a vector (bias, BatchNorm) as one row.

Very large layers are shown in part (the first rows and columns, said in the note) rather than
averaged, so every cell drawn is one weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch

from ..saliency import SaliencyResult, hard_mask, layer_summaries, soft_mask

Layout = Literal["kernels", "matrix"]
MAX_TILES = 32  # output × input channels drawn in the kernel grid
MAX_ROWS, MAX_COLS = 256, 1200  # cells drawn in the matrix layout


def masks(grads: dict[str, torch.Tensor], ratio: float, normalisation: str) -> SaliencyResult:
    """Both masks and the per-layer summaries from forget gradients (cheap next to the gradients)."""
    hard, soft = hard_mask(grads, ratio), soft_mask(grads, normalisation)
    return SaliencyResult(grads, hard, soft, layer_summaries(hard, soft))


@dataclass
class LayerLayout:
    """A 2-D picture of one parameter tensor (NaN cells are gaps), with axis titles and a note."""

    z: np.ndarray
    x_title: str
    y_title: str
    note: str = ""
    square_cells: bool = False


def _kernel_grid(t: np.ndarray) -> LayerLayout:
    out_ch, in_ch, kh, kw = t.shape
    if in_ch == 1:  # one kernel per output channel: wrap them into a near-square grid
        shown = min(out_ch, MAX_TILES * MAX_TILES)
        cols = math.ceil(math.sqrt(shown))
        rows = math.ceil(shown / cols)
        z = np.full((rows * (kh + 1) - 1, cols * (kw + 1) - 1), np.nan)
        for o in range(shown):
            r, c = divmod(o, cols)
            z[r * (kh + 1):r * (kh + 1) + kh, c * (kw + 1):c * (kw + 1) + kw] = t[o, 0]
        note = f"{shown} kernels of {kh}×{kw}, output channel 0 top left, row by row"
        if shown < out_ch:
            note += f" (first {shown} of {out_ch})"
        return LayerLayout(z, f"{cols} kernels per row", "", note, True)
    rows, cols = min(out_ch, MAX_TILES), min(in_ch, MAX_TILES)
    z = np.full((rows * (kh + 1) - 1, cols * (kw + 1) - 1), np.nan)
    for o in range(rows):
        for i in range(cols):
            z[o * (kh + 1):o * (kh + 1) + kh, i * (kw + 1):i * (kw + 1) + kw] = t[o, i]
    note = f"one {kh}×{kw} kernel per cell: row = output channel, column = input channel"
    if (rows, cols) != (out_ch, in_ch):
        note += f"; output channels 0–{rows - 1} of {out_ch}, input channels 0–{cols - 1} of {in_ch}"
    return LayerLayout(z, "input channel", "output channel", note, True)


def _conv_matrix(t: np.ndarray) -> LayerLayout:
    out_ch, in_ch, kh, kw = t.shape
    block = kh * kw
    gap = 1 if in_ch > 1 else 0
    in_shown = max(1, min(in_ch, (MAX_COLS + gap) // (block + gap)))
    rows = min(out_ch, MAX_ROWS)
    z = np.full((rows, in_shown * (block + gap) - gap), np.nan)
    for i in range(in_shown):
        z[:, i * (block + gap):i * (block + gap) + block] = t[:rows, i].reshape(rows, block)
    note = f"row = output channel; each block of {block} columns = one input channel's {kh}×{kw} kernel, row by row"
    if (rows, in_shown) != (out_ch, in_ch):
        note += f"; output channels 0–{rows - 1} of {out_ch}, input channels 0–{in_shown - 1} of {in_ch}"
    return LayerLayout(z, f"input channel × {kh}·{kw} kernel weights", "output channel", note)


def layer_layout(tensor: torch.Tensor, layout: Layout = "kernels") -> LayerLayout:
    """One parameter tensor as a 2-D picture that keeps its structure (see the module docstring)."""
    t = tensor.detach().float().cpu().numpy()
    if t.ndim == 4:
        return _kernel_grid(t) if layout == "kernels" else _conv_matrix(t)
    if t.ndim == 2:
        rows, cols = min(t.shape[0], MAX_ROWS), min(t.shape[1], MAX_COLS)
        note = "row = output unit, column = input feature"
        if (rows, cols) != t.shape:
            note += f"; rows 0–{rows - 1} of {t.shape[0]}, columns 0–{cols - 1} of {t.shape[1]}"
        return LayerLayout(t[:rows, :cols], "input feature", "output unit", note)
    flat = t.reshape(1, -1)[:, :MAX_COLS]
    note = "one value per channel" + ("" if flat.shape[1] == t.size else f" (first {flat.shape[1]} of {t.size})")
    return LayerLayout(flat, "channel", "", note)


def layer_table(result: SaliencyResult) -> pd.DataFrame:
    """Per layer: its size, its share of all parameters, and how much of it each mask lets move.

    "Σ soft" is the soft mask's sum, the number of weights it lets move counted in full-step
    equivalents, to set against "selected" (the hard mask's count).
    """
    total = sum(t.numel() for t in result.hard.values())
    records = []
    for name, hard in result.hard.items():
        soft = result.soft[name]
        size, selected = hard.numel(), int(hard.sum())
        records.append({"layer": name, "shape": "×".join(map(str, hard.shape)), "parameters": size,
                        "% of all parameters": 100 * size / total, "selected (hard)": selected,
                        "% of layer selected": 100 * selected / size, "Σ soft": float(soft.sum()),
                        "mean soft": float(soft.mean())})
    return pd.DataFrame.from_records(records).set_index("layer")


@dataclass
class Agreement:
    """Where one layer's two masks differ. Both rank a layer's weights by |g| the same way, so they
    differ in how far each weight moves: the hard mask moves the selected ones fully and freezes the
    rest; the soft mask moves every weight by its value."""

    selected: int
    frozen: int
    mean_soft_selected: float  # the step the soft mask gives the weights the hard mask moves fully
    mean_soft_frozen: float  # the step the soft mask gives the weights the hard mask freezes
    soft_share_on_frozen: float  # share of the soft mask's total step that falls on hard-frozen weights


def agreement(hard: torch.Tensor, soft: torch.Tensor) -> Agreement:
    h, s = hard.flatten().bool(), soft.flatten().double()
    on, off = s[h], s[~h]
    total = float(s.sum())
    return Agreement(int(h.sum()), int((~h).sum()), float(on.mean()) if len(on) else float("nan"),
                     float(off.mean()) if len(off) else float("nan"),
                     float(off.sum()) / total if total > 0 else 0.0)
