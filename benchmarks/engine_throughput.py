"""Engine throughput as a ratio to a bare forward/backward/SGD loop on the same model, batch and device.

    python benchmarks/engine_throughput.py [--model compact] [--device auto] [--steps 60] [--reps 3]

The bare loop feeds pre-made float batches (no gather, no augmentation, no progress); the engine
runs one CE phase over the on-device dataset, with and without its batched augmentation.
Runs alternate (bare, engine, engine+aug) and the median of ``--reps`` is reported, so load
from other processes hits all three alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from wsscl_core.data import load_dataset  # noqa: E402
from wsscl_core.engine import Phase, Round, cross_entropy_loss, run_phases, to_float  # noqa: E402
from wsscl_core.models import build_model, pick_device  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_loop(model, batches, device, amp: bool) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    _sync(device)
    start = time.perf_counter()
    for x, y in batches:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return time.perf_counter() - start


def engine_loop(model, data, n_images, batch_size, augment: bool, device) -> float:
    phase = Phase("bench", "bench", [Round("train", torch.arange(n_images), cross_entropy_loss, augment=augment)],
                  epochs=1, lr=0.01, batch_size=batch_size)
    _sync(device)
    start = time.perf_counter()
    run_phases(model, data, [phase], on_progress=lambda e: None)
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="compact")
    ap.add_argument("--dataset", default="fashion-mnist-subset")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    device = pick_device(args.device)
    data = load_dataset(args.dataset).to(device)
    n_images = min(args.steps * args.batch_size, len(data.train))
    steps = n_images // args.batch_size
    n_images = steps * args.batch_size
    torch.manual_seed(0)
    model = build_model(args.model, data.channels, data.num_classes, data.mean, data.std).to(device)
    cuda = device.type == "cuda"  # the engine's AMP default; both loops are channels-last like the library
    batches = []
    for i in range(steps):
        x = to_float(data.train.images[i * args.batch_size:(i + 1) * args.batch_size])
        batches.append((x, data.train.labels[i * args.batch_size:(i + 1) * args.batch_size]))
    engine_loop(model, data, n_images, args.batch_size, True, device)  # warm-up (allocator, kernels)
    bare_loop(model, batches, device, cuda)
    times = {"bare": [], "engine": [], "engine+aug": []}
    for _ in range(args.reps):
        times["bare"].append(bare_loop(model, batches, device, cuda))
        times["engine"].append(engine_loop(model, data, n_images, args.batch_size, False, device))
        times["engine+aug"].append(engine_loop(model, data, n_images, args.batch_size, True, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"device {device}, model {args.model}, batch {args.batch_size}, {n_images} images per run, "
          f"median of {args.reps}")
    print("| loop | img/s | ratio to bare |")
    print("|---|---|---|")
    for k, t in med.items():
        print(f"| {k} | {n_images / t:,.0f} | {med['bare'] / t:.3f} |")


if __name__ == "__main__":
    main()
