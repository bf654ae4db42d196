"""Build assets/fashion_mnist_subset.npz: a class-balanced Fashion-MNIST subset (fixed seed).

Usage: python scripts/make_default_subset.py [--root DIR] [--train-per-class 1000] [--test-per-class 200]
       [--val-per-class 200]
The validation images come from the rest of Fashion-MNIST's test split (never the same images as the
subset's test set): tuning scores on them, reported tables on the test set.
Reads the real IDX files (Debian's dataset-fashion-mnist, or a torchvision download).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from wsscl_core.data import DEFAULT_SUBSET_FILE, FASHION_CLASSES, load_fashion_mnist_arrays  # noqa: E402


def balanced_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picks = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)]
    return np.sort(np.concatenate(picks))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=None, help="folder with the Fashion-MNIST IDX files")
    ap.add_argument("--train-per-class", type=int, default=1000)
    ap.add_argument("--test-per-class", type=int, default=200)
    ap.add_argument("--val-per-class", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(DEFAULT_SUBSET_FILE))
    args = ap.parse_args()
    a = load_fashion_mnist_arrays(args.root)
    rng = np.random.default_rng(args.seed)
    tr = balanced_indices(a["train_labels"], args.train_per_class, rng)
    te = balanced_indices(a["test_labels"], args.test_per_class, rng)
    rest = np.setdiff1d(np.arange(len(a["test_labels"])), te)
    va = rest[balanced_indices(a["test_labels"][rest], args.val_per_class, rng)]
    np.savez_compressed(args.out, train_images=a["train_images"][tr], train_labels=a["train_labels"][tr].astype(np.int64),
                        test_images=a["test_images"][te], test_labels=a["test_labels"][te].astype(np.int64),
                        val_images=a["test_images"][va], val_labels=a["test_labels"][va].astype(np.int64),
                        classes=np.array(FASHION_CLASSES))
    print(f"wrote {args.out}: {len(tr)} train / {len(te)} test / {len(va)} validation images")


if __name__ == "__main__":
    main()
