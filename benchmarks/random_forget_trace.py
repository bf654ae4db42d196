"""How selective WSS-CL's stages are on a random forget set (docs/notes/random-forgetting-selectivity.md).

    PYTHONPATH=. python benchmarks/random_forget_trace.py --seed 101 --set stage1_lr=0.01 --set stage1_epochs=5

Runs WSS-CL (random-forgetting defaults, changed by ``--set``) one epoch at a time and prints, after
each epoch, the accuracy on the forget set, on 3,000 retain samples and on the validation images.
Retrain's targets on the same split are printed first. A split seed from 100 and the validation images
keep this away from what the tables report. Each epoch is a separate engine call, so SGD momentum
restarts between epochs.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from wsscl_core.data import ForgetSpec, make_forget_split
from wsscl_core.methods import make_config
from wsscl_core.methods.contrastive import two_stage_phases
from wsscl_core.metrics import predict_logits
from wsscl_core.models import Classifier
from wsscl_core.runs import RunRequest, run
from wsscl_core.saliency import forget_gradients, soft_mask
from wsscl_core.workspace import open_workspace


def accuracy(model: Classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * float((predict_logits(model, images).argmax(1) == labels).float().mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--forget", default="random:0.1")
    p.add_argument("--seed", type=int, default=101)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a WSS-CL value")
    args = p.parse_args(argv)

    overrides = dict(item.split("=", 1) for item in args.set)
    ws = open_workspace(None, device="cpu")
    split = make_forget_split(ws.data.train.labels, ForgetSpec.parse(args.forget, args.seed), ws.data.num_classes)
    train, val = ws.data.train, ws.data.holdout("val")
    retain = split.retain[:3000]
    sets = {"forget": (train.images[split.forget], train.labels[split.forget]),
            "retain": (train.images[retain], train.labels[retain]),
            "val": (val.images, val.labels)}

    def report(name: str, model: Classifier) -> None:
        cells = "  ".join(f"{key} {accuracy(model, *pair):6.2f}" for key, pair in sets.items())
        print(f"{name:16s} {cells}", flush=True)

    retrained = run(ws, RunRequest.parse("retrain", args.forget, None, args.seed, "val"))
    report("Retrain", retrained.model)
    cfg = make_config("wsscl", overrides, split.scenario)
    print(f"WSS-CL values: {dataclasses.asdict(cfg)}")
    ctx = ws.context(split, args.seed)
    mask = soft_mask(forget_gradients(ctx.original, ctx.data, split.forget), cfg.mask_normalisation)
    model = ctx.copy_original()
    report("original", model)
    for stage, epochs in (("stage1", cfg.stage1_epochs), ("stage2", cfg.stage2_epochs)):
        one_epoch = dataclasses.replace(cfg, stage1_epochs=int(stage == "stage1"), stage2_epochs=int(stage == "stage2"))
        for epoch in range(epochs):
            ctx.seed = args.seed + 1000 * (stage == "stage2") + epoch
            ctx.train(model, two_stage_phases(ctx, one_epoch, mask))
            report(f"{stage} epoch {epoch + 1}", model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
