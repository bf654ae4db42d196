"""Shared fixtures: scikit-learn's real 8x8 digits and a small model trained on them (CPU, seconds)."""

import copy
import pickle

import numpy as np
import pytest
import torch

from wsscl_core.checkpoints import checkpoint_bytes
from wsscl_core.data import Dataset, load_dataset
from wsscl_core.engine import TrainRecipe
from wsscl_core.tune import transfer_workspace
from wsscl_core.workspace import Workspace, open_workspace, train_original

torch.set_num_threads(1)  # small models, shared CPUs: one thread avoids oversubscription stalls

DIGITS_RECIPE = TrainRecipe(epochs=12, lr=0.05, batch_size=64, augment=True)  # a quick, well-generalising tiny original


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_trained(digits):
    """(model, metadata) of a compact net trained on all digits train images. Do not modify: deepcopy."""
    return train_original(digits, "compact", DIGITS_RECIPE, seed=0, device="cpu")


@pytest.fixture(scope="session")
def memorising_digits_checkpoint() -> bytes:
    """A digits original trained without augmentation, as the default ``memorise`` recipe trains: the regime
    the class defaults were tuned in (train accuracy 100 %). The one ``tune --write-defaults`` checks class
    round options on (trained once per session)."""
    ws = transfer_workspace()
    return checkpoint_bytes(ws.original, ws.metadata)


@pytest.fixture(scope="session")
def digits_checkpoint(digits_trained) -> bytes:
    model, meta = digits_trained
    return checkpoint_bytes(model, meta)


@pytest.fixture()
def digits_workspace(digits, digits_checkpoint) -> Workspace:
    """A fresh workspace per test (its original model may be checked for changes)."""
    return open_workspace(digits_checkpoint, digits, device="cpu")


@pytest.fixture()
def trained_copy(digits_trained):
    return copy.deepcopy(digits_trained[0])


@pytest.fixture()
def write_cifar10():
    """A writer of CIFAR-10's python batches as the real archive holds them (uint8 rows of 3 x 32 x 32, labels,
    class names; random images) under a root folder; it returns the batches' folder."""
    def write(root, n_per_batch: int = 6):
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                     "labels": list(rng.integers(0, 10, n_per_batch))}
            (folder / name).write_bytes(pickle.dumps(batch))
        (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
        return folder

    return write
