"""Where a forgotten class's logit goes through WSS-CL's stages (docs/notes/class-logit-trace.md).

    PYTHONPATH=. python benchmarks/class_logit_trace.py --forget class:7 --seed 2

Runs stage 1 alone, then stage 1 followed by each of stage 2's rounds alone and by both, with the
class-forgetting defaults (or another soft-mask normalisation), and prints for the forget set: how many images the model still gives
their label, the mean logit of the forgotten class and of the best kept class, and the forgotten
class's row of the output layer.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from wsscl_core.data import ForgetSpec, make_forget_split
from wsscl_core.methods import make_config
from wsscl_core.methods.contrastive import two_stage_phases
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
    stage1, stage2 = two_stage_phases(ctx, cfg, mask)
    contrastive, retain = stage2.rounds
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
        ctx.train(model, [stage1, dataclasses.replace(stage2, rounds=rounds)] if rounds else [stage1])
        model.eval()
        report(name, model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
