"""Size of the forget-gradient saliency and of each soft-mask normalisation on the shipped model.

    PYTHONPATH=. python benchmarks/mask_stats.py [FORGET]     # FORGET: random:0.1 (default), class:3, ...
"""

import sys

import torch
from wsscl_core.workspace import open_workspace
from wsscl_core.data import ForgetSpec, make_forget_split
from wsscl_core.saliency import forget_gradients, soft_mask, SOFT_NORMALISATIONS
ws = open_workspace(device="cpu")
split = make_forget_split(ws.data.train.labels, ForgetSpec.parse(sys.argv[1] if len(sys.argv) > 1 else "random:0.1", 0), 10)
g = forget_gradients(ws.original, ws.data, split.forget)
flat = torch.cat([v.abs().flatten() for v in g.values()])
print(f"params {flat.numel()} median|g| {flat.median():.2e} mean|g| {flat.mean():.2e}")
for n in SOFT_NORMALISATIONS:
    s = torch.cat([m.flatten() for m in soft_mask(g, n).values()])
    print(f"{n:10s} mean {s.mean():.4f} median {s.median():.4f}")
