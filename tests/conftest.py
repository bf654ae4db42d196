"""Shared fixtures: scikit-learn's real 8x8 digits and a small model trained on them (CPU, seconds)."""

import copy

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
