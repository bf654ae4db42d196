"""Where a forgotten class's logit goes through WSS-CL's stages (docs/TUNING.md, class forgetting).

    PYTHONPATH=. python benchmarks/class_logit_trace.py --forget class:7 --seed 2

Runs stage 1 alone, then stage 1 followed by each of stage 2's rounds alone and by both, with the
class-forgetting defaults (or another soft-mask normalisation), and prints for the forget set: how many images the model still gives
their label, the mean logit of the forgotten class and of the best kept class, and the forgotten
class's row of the output layer.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from wsscl_core.data import ForgetSpec, make_forget_split
from wsscl_core.engine import Phase, Round, cross_entropy_loss
from wsscl_core.methods import make_config
from wsscl_core.methods.losses import contrastive_round_loss, kl_to_uniform
from wsscl_core.metrics import predict_logits
from wsscl_core.models import Classifier
from wsscl_core.saliency import forget_gradients, soft_mask
from wsscl_core.workspace import open_workspace


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--forget", default="class:7")
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--mask-normalisation", default=None, help="soft-mask normalisation (default: the class default)")
    args = p.parse_args(argv)

    ws = open_workspace(None, device="cpu")
    split = make_forget_split(ws.data.train.labels, ForgetSpec.parse(args.forget, args.seed), ws.data.num_classes)
    if split.scenario != "class":
        p.error("--forget must name whole classes, e.g. class:7")
    forgotten = split.removed_classes[0]
    ctx = ws.context(split, args.seed)
    overrides = {"mask_normalisation": args.mask_normalisation} if args.mask_normalisation else None
    cfg = make_config("wsscl", overrides, "class")
    kept = ctx.target_classes(cfg.target_classes)
    mask = soft_mask(forget_gradients(ctx.original, ctx.data, split.forget), cfg.mask_normalisation)
    common = dict(batch_size=cfg.batch_size, weight_decay=cfg.weight_decay, mask=mask)
    stage1 = Phase("stage1", "Stage 1", [Round("forget", split.forget, kl_to_uniform(kept), "forget")],
                   epochs=cfg.stage1_epochs, lr=cfg.stage1_lr, **common)
    contrastive = Round("forget", split.forget, contrastive_round_loss(cfg.representation, cfg.tau, kept), "forget",
                        two_views=True, negatives=split.retain, num_negatives=cfg.num_negatives)
    retain_steps = max(1, round(cfg.retain_ratio * math.ceil(split.num_forget / cfg.batch_size)))
    retain = Round("retain", split.retain, cross_entropy_loss, "retain", max_steps=retain_steps)
    images = ws.data.train.images[split.forget]

    def report(name: str, model: Classifier) -> None:
        logits = predict_logits(model, images)
        weight, bias = model.output_layer().weight.detach(), model.output_layer().bias.detach()
        print(f"{name:28s} still labelled {int((logits.argmax(1) == forgotten).sum()):4d}  "
              f"logit {forgotten} {float(logits[:, forgotten].mean()):6.2f}  best kept {float(logits[:, kept].max(1).values.mean()):6.2f}  "
              f"bias {float(bias[forgotten]):6.2f}  |w| {float(weight[forgotten].norm()):.2f}", flush=True)

    report("original", ctx.original)
    for name, rounds in [("stage 1", []), ("stage 1 + contrastive round", [contrastive]),
                         ("stage 1 + retain round", [retain]), ("stage 1 + both (WSS-CL)", [contrastive, retain])]:
        model = ctx.copy_original()
        stage2 = [Phase("stage2", "Stage 2", rounds, epochs=cfg.stage2_epochs, lr=cfg.stage2_lr, **common)] if rounds else []
        ctx.train(model, [stage1, *stage2])
        model.eval()
        report(name, model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
