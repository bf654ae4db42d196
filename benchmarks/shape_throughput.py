"""Images per second of forward + backward + SGD step at the batch shapes WSS-CL and Retrain use.

    python benchmarks/shape_throughput.py [--reps 9]

Train-mode steps at batch 128 (Retrain, stage 1, the retain round); the contrastive round's 384
images (a forget batch, its augmented view and the retain negatives) as one pass or as three passes
of 128; and the saliency pass (eval mode, forget gradients of a 10 % random split). If one shape is
slower per image, WSS-CL's time does not follow its image count; docs/BENCHMARKS.md has the figures.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from wsscl_core.data import ForgetSpec, make_forget_split  # noqa: E402
from wsscl_core.engine import to_float  # noqa: E402
from wsscl_core.saliency import forget_gradients  # noqa: E402
from wsscl_core.workspace import open_workspace  # noqa: E402

IMAGES_PER_TRIAL = 3072


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()
    ws = open_workspace(device="cpu")
    images, labels = ws.data.train.images, ws.data.train.labels
    model = copy.deepcopy(ws.original).to(memory_format=torch.channels_last).train()
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    split = make_forget_split(labels, ForgetSpec.parse("random:0.1", seed=0), ws.data.num_classes)

    def train_steps(batch_size: int, passes: int = 1) -> float:
        batches = [(to_float(images[i:i + batch_size]), labels[i:i + batch_size])
                   for i in range(0, IMAGES_PER_TRIAL, batch_size)]
        start = time.perf_counter()
        for x, y in batches:
            logits = torch.cat([model(part) for part in x.chunk(passes)])
            loss = F.cross_entropy(logits, y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        return IMAGES_PER_TRIAL / (time.perf_counter() - start)

    def saliency_pass() -> float:
        start = time.perf_counter()
        forget_gradients(ws.original, ws.data, split.forget)
        return split.num_forget / (time.perf_counter() - start)

    trials = {"train, batch 128": lambda: train_steps(128), "384, one pass": lambda: train_steps(384),
              "384, three passes": lambda: train_steps(384, passes=3), "saliency pass": saliency_pass}
    for trial in trials.values():  # warm-up: allocator and oneDNN primitives
        trial()
    speeds: dict[str, list[float]] = {name: [] for name in trials}
    for _ in range(args.reps):  # interleaved, so load from other processes hits every shape alike
        for name, trial in trials.items():
            speeds[name].append(trial())
    print(f"torch threads {torch.get_num_threads()}, median of {args.reps}")
    for name, values in speeds.items():
        print(f"{name:18s} {statistics.median(values):6.0f} img/s  ({', '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    main()
