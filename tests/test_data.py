"""Datasets and forget/retain splits."""

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from wsscl_core.data import (ForgetSpec, load_cifar, load_dataset, load_fashion_mnist, load_image_folder,
                             make_forget_split)
from wsscl_core.errors import WssclError


def test_default_subset_is_class_balanced_real_fashion_mnist():
    d = load_dataset()
    assert d.train.images.shape == (10_000, 1, 28, 28) and d.train.images.dtype == torch.uint8
    assert d.test.images.shape == (2_000, 1, 28, 28)
    assert torch.bincount(d.train.labels).tolist() == [1000] * 10
    assert torch.bincount(d.test.labels).tolist() == [200] * 10
    assert d.classes[0] == "T-shirt/top" and d.num_classes == 10
    assert 0.2 < d.mean[0] < 0.4  # Fashion-MNIST's mean intensity is ~0.29


@pytest.mark.parametrize("text", ["random:0.1", "random:0.5", "random:25%", "class:3", "class:1,4"])
def test_split_partitions_train_set(digits, text):
    split = make_forget_split(digits.train.labels, ForgetSpec.parse(text, seed=7), digits.num_classes)
    forget, retain = set(split.forget.tolist()), set(split.retain.tolist())
    assert forget and retain
    assert not forget & retain
    assert forget | retain == set(range(len(digits.train)))


def test_random_split_size_and_seed(digits):
    a = make_forget_split(digits.train.labels, ForgetSpec.parse("random:0.1", seed=1))
    b = make_forget_split(digits.train.labels, ForgetSpec.parse("random:0.1", seed=1))
    c = make_forget_split(digits.train.labels, ForgetSpec.parse("random:0.1", seed=2))
    assert a.num_forget == round(0.1 * len(digits.train))
    assert torch.equal(a.forget, b.forget)
    assert not torch.equal(a.forget, c.forget)


def test_class_split_takes_every_sample_of_the_class(digits):
    split = make_forget_split(digits.train.labels, ForgetSpec.parse("class:3"))
    assert (digits.train.labels[split.forget] == 3).all()
    assert (digits.train.labels[split.retain] != 3).all()
    assert split.removed_classes == (3,) and split.scenario == "class"


def test_scenario_follows_what_the_retain_set_lost():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])
    kept_all = [s for s in range(20) if make_forget_split(labels, ForgetSpec.parse("random:0.125", s)).scenario == "random"]
    assert kept_all, "a one-sample forget set never removes a two-sample class"
    # A random forget set that happens to take every sample of a class is class forgetting too.
    took_class = [s for s in range(50) if make_forget_split(labels, ForgetSpec.parse("random:0.5", s)).removed_classes]
    assert took_class
    split = make_forget_split(labels, ForgetSpec.parse("random:0.5", took_class[0]))
    assert split.scenario == "class"
    assert all(not (labels[split.retain] == c).any() for c in split.removed_classes)


@pytest.mark.parametrize("text, message", [
    ("random:0", "between 0 and 1"), ("random:1", "between 0 and 1"), ("random:1.5", "between 0 and 1"),
    ("class:12", "does not exist"), ("class:0,1,2,3,4,5,6,7,8,9", "every class"), ("bogus", "not understood"),
    ("random:abc", "not understood"),
])
def test_bad_forget_specs_give_clear_errors(digits, text, message):
    with pytest.raises(WssclError, match=message):
        make_forget_split(digits.train.labels, ForgetSpec.parse(text), digits.num_classes)


def test_class_without_samples_is_refused():
    labels = torch.tensor([0, 0, 1, 1, 3])
    with pytest.raises(WssclError, match="no training samples"):
        make_forget_split(labels, ForgetSpec.parse("class:2"), num_classes=4)


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    d = load_fashion_mnist(str(tmp_path), download=False)
    assert d.train.images.shape == (30, 1, 28, 28) and len(d.test) == 10
    assert d.train.labels.tolist()[:3] == [0, 1, 2]


def test_missing_dataset_offline_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr("wsscl_core.data.SYSTEM_FASHION_DIR", tmp_path / "nowhere")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WssclError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(str(tmp_path / "empty"), download=False)
    with pytest.raises(WssclError, match="cifar-10-python.tar.gz"):
        load_cifar("cifar10", str(tmp_path / "empty"), download=False)


def test_cifar10_loader_reads_the_python_batches(tmp_path, write_cifar10):
    write_cifar10(tmp_path)
    d = load_cifar("cifar10", str(tmp_path), download=False)
    assert d.train.images.shape == (30, 3, 32, 32) and len(d.test) == 6
    assert d.classes[0] == "c0" and d.crop_padding == 4


def test_cifar100_loader(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 8), ("test", 4)):
        (folder / name).write_bytes(pickle.dumps({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                                                  "fine_labels": list(range(n))}))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"f{i}" for i in range(100)]}))
    d = load_cifar("cifar100", str(tmp_path), download=False)
    assert d.num_classes == 100 and len(d.train) == 8


class _Boom:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_cifar_batch_with_code_is_refused(tmp_path, write_cifar10):
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": _Boom(), "labels": []}))
    with pytest.raises(WssclError, match="Refusing"):
        load_cifar("cifar10", str(tmp_path), download=False)


def test_image_folder(tmp_path):
    from PIL import Image

    for cls, value in (("cats", 30), ("dogs", 200)):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(np.full((20, 20, 3), value + i, dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    d = load_image_folder(str(tmp_path), image_size=16)
    assert d.classes == ["cats", "dogs"] and d.channels == 3
    assert len(d.train) + len(d.test) == 10 and d.train.images.shape[2:] == (16, 16)
    (tmp_path / "dogs" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(WssclError, match="not a readable image"):
        load_image_folder(str(tmp_path))


def test_unknown_dataset_lists_choices():
    with pytest.raises(WssclError, match="fashion-mnist-subset"):
        load_dataset("mnist-3d")


def _image_tree(root: Path, split: str) -> None:
    from PIL import Image

    for cls, value in (("cats", 30), ("dogs", 200)):
        (root / split / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((12, 12, 3), value + i, dtype=np.uint8)).save(root / split / cls / f"{i}.jpg")


def test_corrupt_jpeg_in_test_split_is_named(tmp_path):
    _image_tree(tmp_path, "train")
    _image_tree(tmp_path, "test")
    (tmp_path / "test" / "dogs" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden files are skipped
    d = load_image_folder(str(tmp_path), image_size=8)
    assert len(d.train) == 6 and len(d.test) == 6
    good = (tmp_path / "test" / "cats" / "0.jpg").read_bytes()
    (tmp_path / "test" / "cats" / "broken.jpg").write_bytes(good[: len(good) // 2])
    with pytest.raises(WssclError, match=r"test/cats/broken\.jpg is not a readable image"):
        load_image_folder(str(tmp_path), image_size=8)


def test_cifar_folder_without_batches_meta_is_named(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
                                                  "labels": [0, 1]}))
    with pytest.raises(WssclError, match="batches.meta is missing"):
        load_cifar("cifar10", str(tmp_path), download=False)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["a", "b"]}))
    (folder / "test_batch").write_bytes(pickle.dumps({"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
                                                      "labels": [0, 7]}))
    with pytest.raises(WssclError, match=r"labels must be 0\.\.1"):
        load_cifar("cifar10", str(tmp_path), download=False)
    (folder / "test_batch").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(WssclError, match="test_batch is corrupt"):
        load_cifar("cifar10", str(tmp_path), download=False)


def test_empty_image_folder_path_is_refused(tmp_path, monkeypatch):
    _image_tree(tmp_path, "train")  # a working directory that would load if scanned
    monkeypatch.chdir(tmp_path / "train")
    for name in ("folder:", "folder:  "):
        with pytest.raises(WssclError, match="folder: needs the path of an image folder"):
            load_dataset(name)
    with pytest.raises(WssclError, match="No image folder was given"):
        load_image_folder("")
