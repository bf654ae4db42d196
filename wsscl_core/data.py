"""Datasets as in-memory uint8 tensors, and the forget/retain split.

Every dataset is held whole as ``(N, C, H, W)`` uint8 images plus int64 labels, so the
training engine can move it to the device once and batch/augment with tensor ops
(no per-sample PIL pipeline in the hot loop).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import torch

from .errors import WssclError

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_SUBSET_FILE = ASSETS_DIR / "fashion_mnist_subset.npz"
DEFAULT_DATASET = "fashion-mnist-subset"

FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
# Which held-out images a run is scored on: the reported test set, or validation images for tuning.
Holdout = Literal["test", "val"]
HOLDOUTS: tuple[str, ...] = ("test", "val")
# Where Debian's `dataset-fashion-mnist` package puts the IDX files.
SYSTEM_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class ImageSet:
    """Images ``(N, C, H, W)`` uint8 and labels ``(N,)`` int64, on one device."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N,C,H,W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must be one int per image")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> "ImageSet":
        return ImageSet(self.images.to(device), self.labels.to(device))

    def subset(self, index: torch.Tensor) -> "ImageSet":
        index = index.to(self.images.device)
        return ImageSet(self.images[index], self.labels[index])


@dataclass
class Dataset:
    """A train/test pair with what models and augmentation need to know about it."""

    name: str
    train: ImageSet
    test: ImageSet
    classes: list[str]
    crop_padding: int = 2
    flip: bool = True
    source: str = ""
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())
    # Validation images for tuning, disjoint from ``test`` (the reported one); see :meth:`holdout`.
    val: ImageSet | None = None

    def __post_init__(self) -> None:
        if not self.mean or not self.std:
            self.mean, self.std = channel_stats(self.train.images)

    def holdout(self, kind: Holdout = "test") -> ImageSet:
        """The held-out images a run is scored on: ``test`` for reported tables, ``val`` for tuning.

        Tuning must never see the reported test images. A dataset without validation images of its
        own (digits, CIFAR, full Fashion-MNIST) lends a fixed half of its test images as ``val``;
        tables on such a dataset should then not use defaults tuned on it.
        """
        if kind == "test":
            return self.test
        if kind != "val":
            raise WssclError(f"Unknown held-out set {kind!r}; choose one of {', '.join(HOLDOUTS)}.")
        if self.val is not None:
            return self.val
        order = torch.randperm(len(self.test), generator=torch.Generator().manual_seed(0))
        return self.test.subset(order[: len(self.test) // 2])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])

    def to(self, device: torch.device | str) -> "Dataset":
        """The same dataset with both splits on ``device`` (one copy, done once)."""
        if self.train.images.device == torch.device(device):
            return self
        return Dataset(self.name, self.train.to(device), self.test.to(device), list(self.classes),
                       self.crop_padding, self.flip, self.source, self.mean, self.std,
                       None if self.val is None else self.val.to(device))

    def fingerprint(self) -> str:
        """A short hash of the train split, stored in checkpoints.

        Unlearning is only meaningful when the original model was trained on exactly
        retain ∪ forget; comparing fingerprints catches a checkpoint trained on other data.
        """
        h = hashlib.sha256()
        h.update(self.train.images.cpu().numpy().tobytes())
        h.update(self.train.labels.cpu().numpy().astype(np.int64).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        return {
            "name": self.name, "classes": list(self.classes), "channels": self.channels,
            "image_size": list(self.image_size), "train_size": len(self.train),
            "test_size": len(self.test), "fingerprint": self.fingerprint(),
            "mean": list(self.mean), "std": list(self.std),
        }


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units (the model normalises its own input)."""
    x = images.float().div_(255)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(v), 5) for v in mean), tuple(round(float(v), 5) for v in std)


# --------------------------------------------------------------------------- loaders

def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not), the format of MNIST and Fashion-MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise WssclError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise WssclError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {data.size}")
    return data.reshape(dims).copy()  # frombuffer is read-only; tensors need writable memory


def _find_idx(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "FashionMNIST" / "raw", root / "fashion-mnist"):
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def _fashion_roots(root: str | None) -> list[Path]:
    roots = [Path(root)] if root else []
    if os.environ.get("WSSCL_DATA"):
        roots.append(Path(os.environ["WSSCL_DATA"]))
    roots += [Path("data"), SYSTEM_FASHION_DIR]
    return roots


def load_fashion_mnist_arrays(root: str | None = None, download: bool = True) -> dict[str, np.ndarray]:
    """The full Fashion-MNIST as numpy arrays: local IDX files first, then torchvision's download."""
    stems = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
    for candidate in _fashion_roots(root):
        paths = {k: _find_idx(candidate, s) for k, s in stems.items()}
        if all(paths.values()):
            return {k: _read_idx(p) for k, p in paths.items()}
    target = Path(root or os.environ.get("WSSCL_DATA") or "data")
    if download:
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(target), train=True, download=True)
            FashionMNIST(str(target), train=False, download=True)
            return load_fashion_mnist_arrays(str(target), download=False)
        except Exception as exc:  # network errors come in many types
            reason = f" (download failed: {exc})"
    else:
        reason = ""
    raise WssclError(
        "Fashion-MNIST was not found locally and could not be downloaded" + reason + ". "
        "On Debian/Ubuntu: `apt-get install dataset-fashion-mnist` (files land in "
        f"{SYSTEM_FASHION_DIR}); or put the four *-ubyte.gz files in {target.resolve()} "
        "or a folder named by --data-root / $WSSCL_DATA."
    )


def _from_numpy(images: np.ndarray, labels: np.ndarray) -> ImageSet:
    if images.ndim == 3:
        images = images[:, None]
    return ImageSet(torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)),
                    torch.from_numpy(np.asarray(labels, dtype=np.int64)))


def load_fashion_mnist(root: str | None = None, download: bool = True) -> Dataset:
    a = load_fashion_mnist_arrays(root, download)
    return Dataset("fashion-mnist", _from_numpy(a["train_images"], a["train_labels"]),
                   _from_numpy(a["test_images"], a["test_labels"]), list(FASHION_CLASSES),
                   crop_padding=2, flip=True, source="Fashion-MNIST (Zalando Research, MIT licence)")


def load_default_subset(path: str | Path | None = None) -> Dataset:
    """The shipped class-balanced Fashion-MNIST subset: works offline, loads in milliseconds."""
    path = Path(path or DEFAULT_SUBSET_FILE)
    if not path.is_file():
        raise WssclError(f"The shipped dataset {path} is missing; re-create it with "
                         "`python scripts/make_default_subset.py`.")
    with np.load(path) as z:
        val = _from_numpy(z["val_images"], z["val_labels"]) if "val_images" in z else None
        return Dataset(DEFAULT_DATASET, _from_numpy(z["train_images"], z["train_labels"]),
                       _from_numpy(z["test_images"], z["test_labels"]), [str(c) for c in z["classes"]],
                       crop_padding=2, flip=True,
                       source="Class-balanced subset of Fashion-MNIST (Zalando Research, MIT licence)", val=val)


def load_digits() -> Dataset:
    """scikit-learn's 8x8 digits (1,797 images): a tiny real dataset for fast tests."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))
    n_train = 1400
    tr, te = order[:n_train], order[n_train:]
    return Dataset("digits", _from_numpy(images[tr], d.target[tr]), _from_numpy(images[te], d.target[te]),
                   [str(i) for i in range(10)], crop_padding=1, flip=False,
                   source="scikit-learn digits (UCI ML hand-written digits)")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's batch files while refusing anything but numpy arrays and builtins."""

    _allowed = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise WssclError(f"Refusing to load {module}.{name} from a CIFAR batch file: not plain array data.")


def _read_cifar_batch(path: Path) -> dict:
    with open(path, "rb") as fh:
        return _ArrayOnlyUnpickler(io.BytesIO(fh.read()), encoding="latin1").load()


CIFAR_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "batches.meta", "label_names", "labels",
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_label_names", "fine_labels",
                 "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
}


def load_cifar(name: str, root: str | None = None, download: bool = True) -> Dataset:
    """CIFAR-10/100 from the python-pickle batches (torchvision's layout), downloading when online."""
    folder_name, train_files, test_files, meta_file, names_key, labels_key, url, md5 = CIFAR_LAYOUT[name]
    base = Path(root or os.environ.get("WSSCL_DATA") or "data")
    folder = base / folder_name
    if not folder.is_dir() and download:
        try:
            from torchvision.datasets.utils import download_and_extract_archive

            download_and_extract_archive(url, str(base), md5=md5)
        except Exception as exc:
            raise WssclError(f"{name} is not in {folder.resolve()} and could not be downloaded ({exc}). "
                             f"Download {url} on a machine with internet and extract it into {base.resolve()}.") from exc
    if not folder.is_dir():
        raise WssclError(f"{name} is not in {folder.resolve()}. Extract {url} into {base.resolve()} "
                         "(or pass --data-root / set $WSSCL_DATA).")

    def unpickle(file: str) -> dict:
        path = folder / file
        try:
            content = _read_cifar_batch(path)
        except FileNotFoundError:
            raise WssclError(f"{name} in {folder} is incomplete: {file} is missing. Extract {url} again "
                             f"into {base.resolve()}.") from None
        except (OSError, pickle.UnpicklingError, ValueError, EOFError, TypeError, AttributeError,
                IndexError) as exc:
            raise WssclError(f"{name} file {path} is corrupt: {exc}") from None
        if not isinstance(content, dict):
            raise WssclError(f"{name} file {path} is corrupt: it holds {type(content).__name__}, not a dict.")
        return content

    try:
        classes = [str(c) for c in unpickle(meta_file)[names_key]]
    except (KeyError, TypeError) as exc:
        raise WssclError(f"{name} file {folder / meta_file} is corrupt: it has no class names ({exc}).") from None

    def read(files: Sequence[str]) -> ImageSet:
        batches = [unpickle(f) for f in files]
        try:
            data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches]).reshape(-1, 3, 32, 32)
            labels = np.concatenate([np.asarray(b[labels_key], dtype=np.int64).reshape(-1) for b in batches])
            if labels.size and not (0 <= labels.min() and labels.max() < len(classes)):
                raise ValueError(f"labels must be 0..{len(classes) - 1}, found {labels.min()}..{labels.max()}")
            return _from_numpy(data, labels)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise WssclError(f"{name} files in {folder} are incomplete or corrupt: {exc}") from None

    return Dataset(name, read(train_files), read(test_files), classes, crop_padding=4, flip=True,
                   source=f"{name.upper()} (Krizhevsky, 2009)")


def load_image_folder(path: str, image_size: int = 32, seed: int = 0) -> Dataset:
    """A user's own images, ImageFolder style: ``path/<class>/*.png`` (split 80/20 by ``seed``),
    or ``path/train/<class>`` and ``path/test/<class>``. Hidden files (``.DS_Store``) are skipped;
    any other file that is not a readable image is refused, in train/ and test/ alike."""
    from PIL import Image, UnidentifiedImageError

    if not str(path).strip():
        raise WssclError("No image folder was given: use folder:PATH with the folder's path.")
    root = Path(path)
    if not root.is_dir():
        raise WssclError(f"Image folder {root} does not exist.")

    def scan(folder: Path) -> tuple[list[tuple[Path, str]], list[str]]:
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        files = [(f, c) for c in classes for f in sorted((folder / c).iterdir())
                 if f.is_file() and not f.name.startswith(".")]
        return files, classes

    def open_image(f: Path):
        try:
            img = Image.open(f)
            img.load()
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
                Image.DecompressionBombError) as exc:
            raise WssclError(f"{f} is not a readable image: {exc}") from None
        return img

    split_dirs = (root / "train").is_dir() and (root / "test").is_dir()
    train_files, classes = scan(root / "train" if split_dirs else root)
    if len(classes) < 2 or not train_files:
        raise WssclError(f"{root} needs one sub-folder per class (at least two) with images inside.")
    images = [open_image(f) for f, _ in train_files]
    gray = all(img.mode in ("L", "1", "I;16") for img in images)
    mode = "L" if gray else "RGB"

    def to_array(imgs: list) -> np.ndarray:
        arr = np.stack([np.asarray(im.convert(mode).resize((image_size, image_size))) for im in imgs])
        return arr[:, None] if mode == "L" else arr.transpose(0, 3, 1, 2)

    labels = np.array([classes.index(c) for _, c in train_files])
    data = to_array(images)
    if split_dirs:
        test_files, test_classes = scan(root / "test")
        unknown = set(test_classes) - set(classes)
        if unknown:
            raise WssclError(f"test/ has classes that train/ lacks: {sorted(unknown)}")
        if not test_files:
            raise WssclError(f"{root / 'test'} holds no images; put test images in one sub-folder per class.")
        test = _from_numpy(to_array([open_image(f) for f, _ in test_files]),
                           np.array([classes.index(c) for _, c in test_files]))
        train = _from_numpy(data, labels)
    else:
        order = np.random.default_rng(seed).permutation(len(labels))
        n_test = max(1, len(order) // 5)
        train = _from_numpy(data[order[n_test:]], labels[order[n_test:]])
        test = _from_numpy(data[order[:n_test]], labels[order[:n_test]])
    return Dataset(f"folder:{path}", train, test, classes, crop_padding=max(1, image_size // 8), flip=True,
                   source=f"image folder {root}")


DATASETS: dict[str, Callable[..., Dataset]] = {
    DEFAULT_DATASET: lambda root=None, download=True: load_default_subset(),
    "fashion-mnist": load_fashion_mnist,
    "cifar10": lambda root=None, download=True: load_cifar("cifar10", root, download),
    "cifar100": lambda root=None, download=True: load_cifar("cifar100", root, download),
    "digits": lambda root=None, download=True: load_digits(),
}


def dataset_names() -> list[str]:
    return list(DATASETS) + ["folder:PATH"]


def load_dataset(name: str = DEFAULT_DATASET, root: str | None = None, download: bool = True) -> Dataset:
    """Load a dataset by name (see :func:`dataset_names`), on the CPU."""
    if name.startswith("folder:"):
        folder = name.split(":", 1)[1]
        if not folder.strip():
            raise WssclError("folder: needs the path of an image folder, e.g. folder:./my_images "
                             "(an empty path would scan the working directory).")
        return load_image_folder(folder)
    if name not in DATASETS:
        raise WssclError(f"Unknown dataset {name!r}; choose one of {', '.join(dataset_names())}.")
    return DATASETS[name](root=root, download=download)


# --------------------------------------------------------------------------- forget sets

Scenario = Literal["random", "class"]


@dataclass(frozen=True)
class ForgetSpec:
    """What to forget: whole classes, or a random fraction of the train set (with a seed)."""

    kind: Literal["class", "random"]
    classes: tuple[int, ...] = ()
    fraction: float = 0.0
    seed: int = 0

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> "ForgetSpec":
        """``class:3``, ``class:1,4`` or ``random:0.1`` (also ``random:10%``)."""
        kind, _, value = text.strip().partition(":")
        kind = kind.lower()
        try:
            if kind == "class":
                classes = tuple(sorted({int(v) for v in value.split(",") if v.strip()}))
                if not classes:
                    raise ValueError
                return cls("class", classes=classes, seed=seed)
            if kind == "random":
                frac = float(value.rstrip("%")) / (100 if value.endswith("%") else 1)
                return cls("random", fraction=frac, seed=seed)
        except ValueError:
            pass
        raise WssclError(f"Forget set {text!r} is not understood: use class:K, class:K1,K2 or random:FRACTION "
                         "(e.g. class:3 or random:0.1).")

    def __str__(self) -> str:
        if self.kind == "class":
            return "class:" + ",".join(map(str, self.classes))
        return f"random:{self.fraction:g}"

    def describe(self) -> dict:
        return {"kind": self.kind, "classes": list(self.classes), "fraction": self.fraction, "seed": self.seed,
                "text": str(self)}


@dataclass
class ForgetSplit:
    """Explicit index sets into the train split: forget ∪ retain = train, disjoint."""

    spec: ForgetSpec
    forget: torch.Tensor
    retain: torch.Tensor
    removed_classes: tuple[int, ...] = ()  # classes with training samples of which D_r keeps none

    @property
    def scenario(self) -> Scenario:
        """'class' when D_f takes every sample of some class, else 'random': the two scenarios of the
        literature, for which methods have their own tuned defaults (``methods/defaults.json``)."""
        return "class" if self.removed_classes else "random"

    @property
    def num_forget(self) -> int:
        return int(self.forget.numel())

    @property
    def num_retain(self) -> int:
        return int(self.retain.numel())


def make_forget_split(train_labels: torch.Tensor, spec: ForgetSpec, num_classes: int | None = None) -> ForgetSplit:
    """Split the train set by ``spec``. Raises :class:`WssclError` for an empty or whole forget set."""
    labels = train_labels.cpu()
    n = labels.numel()
    num_classes = num_classes or int(labels.max()) + 1
    if spec.kind == "class":
        bad = [c for c in spec.classes if not 0 <= c < num_classes]
        if bad:
            raise WssclError(f"Class {bad[0]} does not exist: classes are 0..{num_classes - 1}.")
        if len(spec.classes) >= num_classes:
            raise WssclError("Forgetting every class leaves nothing to retain; pick fewer classes.")
        is_forget = torch.isin(labels, torch.tensor(spec.classes))
        if not bool(is_forget.any()):
            raise WssclError(f"Class(es) {list(spec.classes)} have no training samples to forget.")
    elif spec.kind == "random":
        if not 0.0 < spec.fraction < 1.0:
            raise WssclError(f"Forget fraction must be between 0 and 1 (exclusive), got {spec.fraction:g}.")
        k = int(round(spec.fraction * n))
        if k == 0 or k == n:
            raise WssclError(f"A fraction of {spec.fraction:g} of {n} samples is {k}: the forget set and "
                             "the retain set must both be non-empty.")
        g = torch.Generator().manual_seed(spec.seed)
        is_forget = torch.zeros(n, dtype=torch.bool)
        is_forget[torch.randperm(n, generator=g)[:k]] = True
    else:
        raise WssclError(f"Unknown forget kind {spec.kind!r}.")
    all_idx = torch.arange(n)
    removed = sorted(set(labels.unique().tolist()) - set(labels[~is_forget].unique().tolist()))
    return ForgetSplit(spec, all_idx[is_forget], all_idx[~is_forget], tuple(removed))
