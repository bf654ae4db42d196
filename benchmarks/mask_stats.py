"""Size of the forget-gradient saliency and of each soft-mask normalisation on the shipped model.

    PYTHONPATH=. python benchmarks/mask_stats.py [FORGET]     # FORGET: random:0.1 (default), class:3, ...
"""

import argparse

import torch

from wsscl_core.data import ForgetSpec, make_forget_split
from wsscl_core.saliency import SOFT_NORMALISATIONS, forget_gradients, soft_mask
from wsscl_core.workspace import open_workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("forget", nargs="?", default="random:0.1", help="class:K or random:FRACTION (split seed 0)")
    args = parser.parse_args()
    ws = open_workspace(device="cpu")
    split = make_forget_split(ws.data.train.labels, ForgetSpec.parse(args.forget, 0), ws.data.num_classes)
    grads = forget_gradients(ws.original, ws.data, split.forget)
    flat = torch.cat([v.abs().flatten() for v in grads.values()])
    print(f"params {flat.numel()} median|g| {flat.median():.2e} mean|g| {flat.mean():.2e}")
    for name in SOFT_NORMALISATIONS:
        mask = torch.cat([m.flatten() for m in soft_mask(grads, name).values()])
        print(f"{name:10s} mean {mask.mean():.4f} median {mask.median():.4f}")


if __name__ == "__main__":
    main()
