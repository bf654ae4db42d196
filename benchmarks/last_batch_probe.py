"""Does a left-over last batch keep the memorising recipe from memorising a small train set?

    PYTHONPATH=. python benchmarks/last_batch_probe.py --sizes 900,904,912,920,928,944,960,1000

Trains the default `memorise` recipe (30 epochs, batch 128, no augmentation) on the first n of a fixed
permutation of the small Fashion-MNIST set of `unseen_dataset.py` (100 images per class, none from the
shipped subset), once with ragged batches (full ones and the n mod 128 left over, as every original
before even batches) and once with even ones (the same number of batches, sizes within one), and prints
train and test accuracy. Retrain of a random-10 % forget set of 1,000 images trains on 900 of them: four
left over.
"""

from __future__ import annotations

import argparse

import torch
from unseen_dataset import load_fashion_mnist_small  # the script's folder is on the path

from wsscl_core.data import Dataset
from wsscl_core.engine import TrainRecipe
from wsscl_core.workspace import train_original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="900,904,912,920,928,944,960,1000")
    args = parser.parse_args()
    data = load_fashion_mnist_small(100, 200)
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(5))
    print("| train images | left over (ragged) | ragged: train / test accuracy | even: train / test accuracy |")
    print("|---|---|---|---|")
    for n in (int(v) for v in args.sizes.split(",")):
        part = Dataset(f"{data.name}-{n}", data.train.subset(order[:n]), data.test, data.classes,
                       crop_padding=data.crop_padding, flip=data.flip, source=data.source)
        cells = []
        for batching in ("ragged", "even"):
            _, meta = train_original(part, "compact", TrainRecipe(batching=batching), seed=0, device="cpu")
            cells.append(f"{meta['metrics']['RA']:.2f} / {meta['metrics']['TA']:.2f}")
        print(f"| {n} | {n % 128} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
