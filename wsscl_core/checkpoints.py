"""Safe checkpoint load/save with one metadata schema, and checkpoints from other tools.

Loading never trusts the file:

* its size is bounded before anything is read or inflated: by the caller's byte budget (see
  :func:`checkpoint_budget_for`) or :data:`MAX_CHECKPOINT_BYTES`. For the zip format the sizes its
  records declare in the zip's central directory are added up first, so a small deflate-compressed
  file that would unpack to gigabytes is refused before a byte of it is inflated;
* it is read with ``torch.load(weights_only=True)``: tensors and plain containers, never code;
* its metadata is checked against :data:`METADATA_FIELDS` (one schema, one message per bad field),
  and its weights must be finite numbers.

Saving is atomic (see :mod:`wsscl_core.fileio`): a crash never leaves a half-written checkpoint,
and a checkpoint can be written together with its companion files (the run's metrics JSON).
"""

from __future__ import annotations

import functools
import io
import math
import os
import pickle
import stat
import time
import typing
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence

import torch
from torch import nn

from .data import Dataset
from .engine import TrainRecipe
from .errors import WssclError
from .fileio import Content, PathLike, atomic_write_files
from .methods import MAX_LR
from .models import MODELS, Classifier, build_model

FORMAT = "wsscl-checkpoint"
FORMAT_VERSION = 1
DEFAULT_MODEL_FILE = Path(__file__).resolve().parent.parent / "assets" / "default_model.pt"
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")

# Size limits, checked before anything is unpickled or inflated.
MAX_CHECKPOINT_BYTES = 1 << 30  # any checkpoint, when the caller knows no model to size it by (1 GiB)
CHECKPOINT_MARGIN_BYTES = 1 << 20  # metadata and pickle structure on top of the weights
OPTIMIZER_COPIES = 2  # foreign training checkpoints may carry optimiser state: Adam keeps 2 tensors per weight
MAX_PICKLE_BYTES = 4 << 20  # the pickle itself (structure and metadata; tensors are separate records)
MAX_ZIP_DIRECTORY_BYTES = 4 << 20  # the zip's table of contents (about 50,000 records)


# --------------------------------------------------------------------------- sizes

def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of ``model``'s weights as a checkpoint stores them: the sum of ``numel * element_size``
    over its state dict (parameters and persistent buffers)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def checkpoint_byte_budget(model: nn.Module, extra_copies: int = OPTIMIZER_COPIES) -> int:
    """The most bytes a checkpoint of ``model`` may unpack to: its weights, ``extra_copies`` more
    copies for optimiser state that foreign training checkpoints carry, and a margin for metadata.
    Pass it as ``read_checkpoint(..., max_bytes=...)``."""
    return (1 + max(0, extra_copies)) * state_dict_bytes(model) + CHECKPOINT_MARGIN_BYTES


def checkpoint_budget_for(dataset: Dataset, model_name: str | None = None,
                          extra_copies: int = OPTIMIZER_COPIES) -> int:
    """:func:`checkpoint_byte_budget` for ``dataset``'s channels and classes: of the largest registered
    model by default (the budget to use when loading a checkpoint for a dataset: a checkpoint of any
    registered architecture fits it, and a wrong one then gets the shape check's message), or of
    ``model_name`` only. The models are built on the meta device: no weights are allocated."""
    if model_name and model_name not in MODELS:
        raise WssclError(f"Unknown model {model_name!r}; choose one of {', '.join(MODELS)}.")
    names = [model_name] if model_name else list(MODELS)
    return max(_registered_budget(name, dataset.channels, dataset.num_classes, extra_copies) for name in names)


@functools.lru_cache(maxsize=64)
def _registered_budget(name: str, in_channels: int, num_classes: int, extra_copies: int) -> int:
    with torch.device("meta"):
        model = MODELS[name](in_channels=in_channels, num_classes=num_classes, mean=None, std=None)
    return checkpoint_byte_budget(model, extra_copies)


def _mb(n: int) -> str:
    """A byte count for messages: kB, MB or GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1e3:.1f} kB"


def _limit_words(budget: int, explicit: bool) -> str:
    if explicit:
        return f"the {_mb(budget)} a checkpoint for this model may take"
    return f"the {_mb(budget)} limit for checkpoints"


# --------------------------------------------------------------------------- metadata schema

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_finite(v: Any) -> bool:
    return _is_number(v) and math.isfinite(v)


def _is_text(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _is_mapping(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) for k in v)


def _numbers(v: Any, ok: Callable[[Any], bool]) -> bool:
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(ok(x) for x in v)


def _int_from(lo: int) -> Callable[[Any], bool]:
    return lambda v: _is_int(v) and v >= lo


@dataclass(frozen=True)
class MetaField:
    """One known metadata key: what its value must be (in words, for the message) and the test."""

    key: str
    must_be: str
    ok: Callable[[Any], bool]


SCHEDULES = typing.get_args(typing.get_type_hints(TrainRecipe)["schedule"])
BATCHINGS = typing.get_args(typing.get_type_hints(TrainRecipe)["batching"])

RECIPE_FIELDS: tuple[MetaField, ...] = (
    MetaField("epochs", "a whole number of at least 1", _int_from(1)),
    MetaField("lr", f"a number above 0 and at most {MAX_LR:g}", lambda v: _is_finite(v) and 0 < v <= MAX_LR),
    MetaField("batch_size", "a whole number of at least 1", _int_from(1)),
    MetaField("momentum", "a number from 0 to below 1", lambda v: _is_finite(v) and 0 <= v < 1),
    MetaField("weight_decay", "a number from 0 to 1", lambda v: _is_finite(v) and 0 <= v <= 1),
    MetaField("nesterov", "true or false", lambda v: isinstance(v, bool)),
    MetaField("schedule", f"one of {', '.join(SCHEDULES)}", lambda v: v in SCHEDULES),
    MetaField("warmup_fraction", "a number from 0 to below 1", lambda v: _is_finite(v) and 0 <= v < 1),
    MetaField("augment", "true or false", lambda v: isinstance(v, bool)),
    MetaField("batching", f"one of {', '.join(BATCHINGS)}", lambda v: v in BATCHINGS),
)
DATASET_FIELDS: tuple[MetaField, ...] = (
    MetaField("name", "the dataset's name (text)", _is_text),
    MetaField("classes", "a list of class names (text)", lambda v: isinstance(v, (list, tuple))
              and all(isinstance(c, str) for c in v)),
    MetaField("channels", "1 (grey) or 3 (colour)", lambda v: _is_int(v) and v in (1, 3)),
    MetaField("image_size", "[height, width], whole numbers of at least 1",
              lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_int_from(1)(x) for x in v)),
    MetaField("train_size", "a whole number of at least 1", _int_from(1)),
    MetaField("test_size", "a whole number of at least 0", _int_from(0)),
    MetaField("fingerprint", "a text hash of the train split", _is_text),
    MetaField("mean", "a list of finite numbers, one per channel", lambda v: _numbers(v, _is_finite)),
    MetaField("std", "a list of finite numbers above 0, one per channel",
              lambda v: _numbers(v, lambda x: _is_finite(x) and x > 0)),
)
METADATA_FIELDS: tuple[MetaField, ...] = (
    MetaField("format", f"the text {FORMAT!r}", lambda v: v == FORMAT),
    MetaField("version", f"a whole number from 1 to {FORMAT_VERSION} (a newer version needs a newer wsscl_core)",
              lambda v: _is_int(v) and 1 <= v <= FORMAT_VERSION),
    MetaField("saved_at", "a date and time (text)", lambda v: isinstance(v, str)),
    MetaField("model", f"one of {', '.join(MODELS)}", lambda v: isinstance(v, str) and v in MODELS),
    MetaField("num_classes", "a whole number of at least 2", _int_from(2)),
    MetaField("in_channels", "1 (grey) or 3 (colour)", lambda v: _is_int(v) and v in (1, 3)),
    MetaField("mean", "a list of finite numbers, one per input channel", lambda v: _numbers(v, _is_finite)),
    MetaField("std", "a list of finite numbers above 0, one per input channel",
              lambda v: _numbers(v, lambda x: _is_finite(x) and x > 0)),
    MetaField("dataset", "a mapping (name, classes, fingerprint, …)", _is_mapping),
    MetaField("recipe", "a mapping of training settings (epochs, lr, batch_size, …)", _is_mapping),
    MetaField("seed", "a whole number", _is_int),
    MetaField("method", "a method name (text)", _is_text),
    MetaField("metrics", "a mapping of metric names to numbers",
              lambda v: _is_mapping(v) and all(_is_number(x) for x in v.values())),
    MetaField("original", "a mapping of metric names to numbers",
              lambda v: _is_mapping(v) and all(_is_number(x) for x in v.values())),
    MetaField("train_seconds", "a number of at least 0", lambda v: _is_finite(v) and v >= 0),
    MetaField("rte_s", "a number of at least 0", lambda v: _is_finite(v) and v >= 0),
    MetaField("device", "a device name (text)", lambda v: isinstance(v, str)),
    MetaField("forget", "a mapping describing the forget set", _is_mapping),
    MetaField("hyperparameters", "a mapping of hyperparameters", _is_mapping),
    MetaField("config", "a mapping of hyperparameters", _is_mapping),
)


def _shown(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "…"


def _check_fields(block: dict, fields: Sequence[MetaField], prefix: str, problems: list[str]) -> None:
    for f in fields:
        if f.key in block and not f.ok(block[f.key]):
            problems.append(f"{prefix}{f.key} must be {f.must_be}, got {_shown(block[f.key])}")


def input_channels(state: dict[str, torch.Tensor]) -> int | None:
    """Input channels the weights take: dim 1 of the first convolution's weight (None if there is none)."""
    for key in ("body.0.0.weight", "conv1.weight"):
        if key in state and state[key].dim() == 4:
            return int(state[key].shape[1])
    first = next((t for t in state.values() if t.dim() == 4), None)
    return None if first is None else int(first.shape[1])


def validate_metadata(meta: dict, state: dict[str, torch.Tensor] | None = None) -> dict:
    """Check checkpoint metadata against the schema (:data:`METADATA_FIELDS`, with
    :data:`DATASET_FIELDS` under ``dataset`` and :data:`RECIPE_FIELDS` under ``recipe``), and against
    the weights in ``state`` when given (input channels). Keys the schema does not know are kept and
    not checked (forward compatibility). Returns ``meta``; raises :class:`WssclError` naming every
    bad field, on one line."""
    if not isinstance(meta, dict):
        raise WssclError(f"The checkpoint's metadata must be a mapping, got {_shown(meta)}.")
    problems: list[str] = []
    _check_fields(meta, METADATA_FIELDS, "", problems)
    bad = {p.split(" ", 1)[0] for p in problems}
    dataset, recipe = meta.get("dataset"), meta.get("recipe")
    if "dataset" not in bad and isinstance(dataset, dict):
        _check_fields(dataset, DATASET_FIELDS, "dataset.", problems)
    if "recipe" not in bad and isinstance(recipe, dict):
        _check_fields(recipe, RECIPE_FIELDS, "recipe.", problems)
        if recipe.get("nesterov") is True and recipe.get("momentum") == 0:
            problems.append("recipe.nesterov needs a momentum above 0")
    bad = {p.split(" ", 1)[0] for p in problems}
    weights_channels = input_channels(state) if state else None
    channels = meta.get("in_channels") if "in_channels" not in bad else None
    if channels is not None and weights_channels is not None and channels != weights_channels:
        problems.append(f"in_channels is {channels} but the weights take {weights_channels}-channel images")
    channels = channels or weights_channels
    for key in ("mean", "std"):
        if channels and key in meta and key not in bad and len(meta[key]) != channels:
            problems.append(f"{key} has {len(meta[key])} values but the model takes {channels} input channel(s)")
    if isinstance(dataset, dict) and "dataset" not in bad:
        classes, k = dataset.get("classes"), meta.get("num_classes")
        if "dataset.classes" not in bad and classes is not None and _is_int(k) and len(classes) != k:
            problems.append(f"dataset.classes names {len(classes)} classes but num_classes is {k}")
        ch = dataset.get("channels")
        if "dataset.channels" not in bad and ch is not None and channels and ch != channels:
            problems.append(f"dataset.channels is {ch} but the model takes {channels} input channel(s)")
    if problems:
        raise WssclError("The checkpoint's metadata is not valid: " + "; ".join(problems) + ".")
    return meta


def check_weights_finite(state: dict[str, torch.Tensor], name: str = "The checkpoint") -> None:
    """Refuse weights holding NaN or infinity (a diverged model, or a damaged file)."""
    bad = [k for k, t in state.items()
           if (t.is_floating_point() or t.is_complex()) and t.numel() and not bool(torch.isfinite(t).all())]
    if bad:
        shown = ", ".join(bad[:5]) + (f" … (+{len(bad) - 5} more)" if len(bad) > 5 else "")
        raise WssclError(f"{name} holds weights that are not finite numbers (NaN or infinity) in {shown}; "
                         "such a model cannot be used.")


# --------------------------------------------------------------------------- saving

def _payload(model: nn.Module, metadata: dict) -> dict:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **metadata}
    validate_metadata(meta, state)  # never write what reading would refuse
    return {"format": FORMAT, "version": FORMAT_VERSION, "state_dict": state, "metadata": meta}


def checkpoint_bytes(model: nn.Module, metadata: dict) -> bytes:
    """The checkpoint as bytes (for a download button)."""
    buf = io.BytesIO()
    torch.save(_payload(model, metadata), buf)
    return buf.getvalue()


def save_checkpoint(path: str | Path, model: nn.Module, metadata: dict,
                    extra_files: Sequence[tuple[PathLike, Content]] = ()) -> Path:
    """Write a checkpoint atomically (temp file in the same folder, fsync, rename).

    ``extra_files`` — ``(path, bytes or text)`` pairs such as the run's metrics JSON — are written
    in the same step: the checkpoint is renamed into place first and the extra files after it, so
    an extra file is only new when the checkpoint is (see :func:`~wsscl_core.fileio.atomic_write_files`
    for the exact guarantee). Paths are checked first (:func:`~wsscl_core.fileio.check_output_paths`).
    """
    payload = _payload(model, metadata)
    files: list[tuple[PathLike, Content]] = [(path, lambda fh: torch.save(payload, fh)), *extra_files]
    return atomic_write_files(files)[0]


# --------------------------------------------------------------------------- reading

def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                        for k, v in obj.items())


def _unwrap(obj: object) -> tuple[dict[str, torch.Tensor], dict]:
    """Find the state dict inside our format or a foreign wrapper; strip DataParallel prefixes."""
    metadata: dict = {}
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        raw = obj.get("metadata")
        if raw is not None and not isinstance(raw, dict):
            raise WssclError(f"The checkpoint's metadata must be a mapping, got {_shown(raw)}.")
        metadata = dict(raw or {})
        version = obj.get("version", FORMAT_VERSION)
        if not (_is_int(version) and 1 <= version <= FORMAT_VERSION):
            raise WssclError(f"This checkpoint has format version {_shown(version)}; this wsscl_core reads versions "
                             f"1 to {FORMAT_VERSION}. A newer version needs a newer wsscl_core.")
    state = obj
    for _ in range(3):
        if _is_state_dict(state):
            break
        if isinstance(state, dict):
            inner = next((state[k] for k in _WRAPPER_KEYS if k in state and isinstance(state[k], dict)), None)
            if inner is not None:
                state = inner
                continue
        raise WssclError("This file holds no model weights: expected a state_dict (name → tensor), optionally "
                         "wrapped as {'state_dict': ...} or {'model': ...}.")
    if not _is_state_dict(state):
        raise WssclError("This file holds no model weights (no state_dict of tensors was found).")
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state, metadata


def _too_big(name: str, size: int, budget: int, explicit: bool) -> WssclError:
    return WssclError(f"{name} was refused: it is {_mb(size)}, more than {_limit_words(budget, explicit)}.")


def _remaining_size(fh: BinaryIO) -> int | None:
    """Bytes left in a seekable stream (None when it cannot tell)."""
    try:
        here = fh.tell()
        end = fh.seek(0, os.SEEK_END)
        fh.seek(here)
        return end - here
    except (AttributeError, OSError, ValueError):
        return None


def _read_limited(fh: BinaryIO, expected: int | None, budget: int) -> bytes:
    """Up to ``budget`` + 1 bytes; asks for the ``expected`` size first (a read of n bytes reserves n)."""
    data = fh.read(min(expected, budget) + 1) if expected is not None else b""
    if expected is None or len(data) > expected:  # size unknown, or the file grew while being read
        data += fh.read(budget + 1 - len(data))
    return data


def _read_source(source: str | Path | bytes | BinaryIO, budget: int, explicit: bool) -> tuple[bytes, str]:
    """The file's bytes and a name for messages; never reads more than ``budget`` + 1 bytes."""
    if isinstance(source, (str, Path)):
        if not str(source).strip():
            raise WssclError("No checkpoint path was given.")
        path = Path(source)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise WssclError(f"Checkpoint {path} does not exist.") from None
        except OSError as exc:
            raise WssclError(f"Checkpoint {path} cannot be read: {exc.strerror}.") from None
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise WssclError(f"Checkpoint {path} is {kind}; give the path of a .pt file.")
        if st.st_size > budget:
            raise _too_big(path.name, st.st_size, budget, explicit)
        try:
            with open(path, "rb") as fh:
                data = _read_limited(fh, st.st_size, budget)
        except OSError as exc:
            raise WssclError(f"Checkpoint {path} cannot be read: {exc.strerror}.") from None
        name = path.name
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = source if isinstance(source, bytes) else bytes(source)
        name = "the uploaded file"
    else:
        label = getattr(source, "name", None)
        name = Path(label).name if isinstance(label, str) and label.strip() else "the uploaded file"
        size = _remaining_size(source)
        if size is not None and size > budget:
            raise _too_big(name, size, budget, explicit)
        data = _read_limited(source, size, budget)
    if len(data) > budget:
        raise _too_big(name, len(data), budget, explicit)
    return data, name


def _zip_directory_size(data: bytes) -> int | None:
    """Bytes of the zip's central directory per its end record (zip64 aware); None if not found."""
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - 22 - 65535))
    if at < 0 or at + 22 > len(data):
        return None
    size = int.from_bytes(data[at + 12:at + 16], "little")
    loc = at - 20
    if loc >= 0 and data[loc:loc + 4] == b"PK\x06\x07":
        off = int.from_bytes(data[loc + 8:loc + 16], "little")
        if off + 56 <= len(data) and data[off:off + 4] == b"PK\x06\x06":
            size = max(size, int.from_bytes(data[off + 40:off + 48], "little"))
    return size


def _check_zip_sizes(data: bytes, name: str, budget: int, explicit: bool) -> None:
    """Refuse a zip checkpoint whose records would unpack to more than ``budget``, before inflating any.

    The central directory states each record's uncompressed size; PyTorch's reader allocates exactly
    that much per record (and fails if a record would inflate to more), so the sum bounds the memory
    ``torch.load`` can take.
    """
    directory = _zip_directory_size(data)
    if directory is not None and directory > MAX_ZIP_DIRECTORY_BYTES:
        raise WssclError(f"{name} was refused: its zip table of contents is {_mb(directory)}, far more than a "
                         "checkpoint's (one entry per tensor).")
    try:
        records = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, IndexError) as exc:
        raise WssclError(f"{name} is not a readable PyTorch checkpoint (truncated or a different file type): "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None
    total = sum(r.file_size for r in records)
    if total > budget:
        packed = sum(r.compress_size for r in records)
        raise WssclError(f"{name} was refused: its {len(records)} records unpack to {_mb(total)} "
                         f"(from {_mb(packed)} compressed), more than {_limit_words(budget, explicit)}.")
    pickles = [r for r in records if r.filename.rsplit("/", 1)[-1].endswith(".pkl")]
    for r in pickles:
        if r.file_size > MAX_PICKLE_BYTES:
            raise WssclError(f"{name} was refused: its pickle {r.filename} is {_mb(r.file_size)}, more than the "
                             f"{_mb(MAX_PICKLE_BYTES)} that weights and metadata need; save only the model's "
                             "state_dict and plain metadata.")


def _describe_foreign(data: bytes) -> str | None:
    """What a file that is not a PyTorch checkpoint looks like, from its first bytes (None: no idea)."""
    head = data[:512]
    if len(data) >= 10 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= len(data) - 8:
        return ("a safetensors file, a format this loader does not read; convert it with "
                "`torch.save(safetensors.torch.load_file(path), 'model.pt')`")
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file (a Keras or TensorFlow model?)"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy array file"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file; decompress it first"
    if head.startswith(b"PK\x03\x04"):
        try:
            names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, IndexError):
            return None
        if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "a zip archive without the data.pkl that PyTorch checkpoints have"
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the 512-byte boundary
            return None
        text = head[:exc.start].decode("utf-8")
    if not text or any(not (c.isprintable() or c in "\r\n\t") for c in text):
        return None
    start = text.lstrip()
    if start[:1] == "<":
        return "an HTML or XML page (a failed download?)"
    first = start.splitlines()[0] if start else ""
    return f"a text file (it starts with {first[:40]!r})"


def read_checkpoint(source: str | Path | bytes | BinaryIO, *,
                    max_bytes: int | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, metadata) from a path, bytes or file object, never executing pickled code.

    ``max_bytes`` bounds what the file may take in memory: its size, and for the zip format the
    sizes its records declare, are checked against it before anything is unpickled or inflated.
    Pass :func:`checkpoint_budget_for` (or :func:`checkpoint_byte_budget`) of the model you expect;
    without it, :data:`MAX_CHECKPOINT_BYTES` applies. The metadata is checked with
    :func:`validate_metadata` and the weights must be finite. Every refusal is a :class:`WssclError`.
    """
    explicit = max_bytes is not None
    budget = int(max_bytes) if explicit else MAX_CHECKPOINT_BYTES
    data, name = _read_source(source, budget, explicit)
    if not data:
        raise WssclError(f"{name} is empty.")
    if data.startswith(b"PK\x03\x04"):
        _check_zip_sizes(data, name, budget, explicit)
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        foreign = _describe_foreign(data)
        if foreign:
            raise WssclError(f"{name} is not a readable PyTorch checkpoint: it is {foreign}.") from None
        if "weights only" not in str(exc).lower():
            raise WssclError(f"{name} is not a readable PyTorch checkpoint: {str(exc).splitlines()[0][:200]}") from None
        first = str(exc).strip().splitlines()
        detail = next((ln for ln in first if "GLOBAL" in ln or "Unsupported" in ln), first[0] if first else "")
        raise WssclError(f"{name} was refused: it contains Python objects other than tensors and plain data, "
                         f"which could run code when loaded. ({detail.strip()[:200]})") from None
    except Exception as exc:  # the legacy and zip readers fail in many ways on foreign bytes
        foreign = _describe_foreign(data)
        if foreign:
            raise WssclError(f"{name} is not a readable PyTorch checkpoint: it is {foreign}.") from None
        raise WssclError(f"{name} is not a readable PyTorch checkpoint (truncated or a different file type): "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None
    state, meta = _unwrap(obj)
    validate_metadata(meta, state)
    check_weights_finite(state, name[:1].upper() + name[1:])
    return state, meta


# --------------------------------------------------------------------------- building the model

def detect_architecture(state: dict[str, torch.Tensor]) -> str | None:
    """Guess the registered model a state dict belongs to, from its parameter names and shapes."""
    if "body.0.0.weight" in state and "head.weight" in state:
        return "compact"
    conv1 = state.get("conv1.weight")
    if conv1 is not None and "fc.weight" in state:
        return "resnet18-imagenet-stem" if conv1.shape[-1] == 7 else "resnet18"
    return None


# The SalUn reference code's models carry their input normalisation as buffers of a ``normalize`` module.
_NORMALISE_KEYS = ("normalize.mean", "normalize.std")


def take_input_normalisation(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor],
                                                                       list[float] | None, list[float] | None]:
    """Split ``normalize.mean`` / ``normalize.std`` buffers (one value per input channel) from a state dict:
    they become the model's input normalisation instead of weights to load."""
    present = [k for k in _NORMALISE_KEYS if k in state]
    if not present:
        return state, None, None
    if len(present) == 1:
        raise WssclError(f"The checkpoint has {present[0]} but not its pair; its input normalisation is incomplete.")
    mean, std = (state[k].detach().float().flatten().tolist() for k in _NORMALISE_KEYS)
    if len(mean) != len(std) or not all(v > 0 and math.isfinite(v) for v in std) \
            or not all(math.isfinite(v) for v in mean):
        raise WssclError(f"The checkpoint's input normalisation is not usable (normalize.mean {mean}, "
                         f"normalize.std {std}).")
    return {k: v for k, v in state.items() if k not in _NORMALISE_KEYS}, mean, std


def _shape_report(model: nn.Module, state: dict[str, torch.Tensor], arch: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    conflicts = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                 for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if not (missing or unexpected or conflicts):
        return
    lines = [f"The checkpoint does not fit the '{arch}' model for this dataset."]
    for title, items in (("Shape conflicts", conflicts), ("Missing keys", missing), ("Unexpected keys", unexpected)):
        if items:
            shown = ", ".join(items[:8]) + (f" … (+{len(items) - 8} more)" if len(items) > 8 else "")
            lines.append(f"{title} ({len(items)}): {shown}")
    raise WssclError("\n".join(lines))


def load_model(source: str | Path | bytes | BinaryIO, *, dataset: Dataset | None = None,
               model_name: str | None = None, device: torch.device | str = "cpu",
               max_bytes: int | None = None) -> tuple[Classifier, dict]:
    """Read a checkpoint safely and build its model (see :func:`read_checkpoint`, :func:`model_from_state`).

    Without ``max_bytes``, a given ``dataset`` sets the budget to :func:`checkpoint_budget_for` of the
    largest registered model (not only ``model_name``'s), so that a checkpoint of another registered
    architecture reaches the shape check, whose message names the architecture it looks like."""
    if max_bytes is None and dataset is not None:
        max_bytes = checkpoint_budget_for(dataset)
    state, meta = read_checkpoint(source, max_bytes=max_bytes)
    return model_from_state(state, meta, dataset=dataset, model_name=model_name, device=device)


def model_from_state(state: dict[str, torch.Tensor], meta: dict, *, dataset: Dataset | None = None,
                     model_name: str | None = None, device: torch.device | str = "cpu") -> tuple[Classifier, dict]:
    """Build the right architecture and load weights into it.

    Our own checkpoints carry their architecture and normalisation. For a foreign one, the
    architecture comes from ``model_name`` or is detected from its keys, and classes/channels
    come from ``dataset``. The metadata is checked with :func:`validate_metadata`; any mismatch
    raises :class:`WssclError` naming the keys and shapes.
    """
    state, buffer_mean, buffer_std = take_input_normalisation(state)
    validate_metadata(meta, state)
    detected = detect_architecture(state)
    arch = model_name or meta.get("model") or detected
    if arch is None:
        raise WssclError("Could not tell which architecture this checkpoint is for; choose one of "
                         f"{', '.join(MODELS)}. First keys in the file: {', '.join(list(state)[:5])}")
    if arch not in MODELS:
        raise WssclError(f"Unknown model {arch!r}; choose one of {', '.join(MODELS)}.")
    if dataset is not None:
        num_classes, channels = dataset.num_classes, dataset.channels
        mean, std = dataset.mean, dataset.std
        if meta.get("num_classes") not in (None, num_classes):
            raise WssclError(f"The checkpoint was trained for {meta['num_classes']} classes but "
                             f"{dataset.name} has {num_classes}.")
        if meta.get("in_channels") not in (None, channels):
            raise WssclError(f"The checkpoint takes {meta['in_channels']}-channel images but "
                             f"{dataset.name} has {channels}-channel images.")
    elif "num_classes" in meta:
        num_classes, mean, std = meta["num_classes"], meta.get("mean"), meta.get("std")
        channels = meta.get("in_channels") or input_channels(state)
        if channels is None:
            raise WssclError("This checkpoint does not say how many input channels it takes; say which dataset "
                             "it was trained on.")
    else:
        raise WssclError("This checkpoint carries no metadata; say which dataset it was trained on.")
    if buffer_mean is not None:
        if len(buffer_mean) != channels:
            raise WssclError(f"The checkpoint normalises {len(buffer_mean)} input channel(s) (normalize.mean) but the "
                             f"images have {channels}.")
        mean, std, meta = buffer_mean, buffer_std, {k: v for k, v in meta.items() if k not in ("mean", "std")}
    hint = ""
    if detected and detected != arch:
        hint = f" (its keys look like a '{detected}' checkpoint)"
    model = build_model(arch, channels, num_classes, meta.get("mean") or mean, meta.get("std") or std)
    try:
        _shape_report(model, state, arch)
    except WssclError as exc:
        raise WssclError(str(exc) + hint) from None
    model.load_state_dict(state, strict=True)
    return model.to(device), {**meta, "model": arch, "num_classes": num_classes, "in_channels": channels,
                              "mean": list(meta.get("mean") or mean), "std": list(meta.get("std") or std)}


def model_metadata(model_name: str, dataset: Dataset, **extra) -> dict:
    """The metadata block every checkpoint we write carries (its keys: :data:`METADATA_FIELDS`)."""
    return {"model": model_name, "num_classes": dataset.num_classes, "in_channels": dataset.channels,
            "mean": list(dataset.mean), "std": list(dataset.std), "dataset": dataset.describe(), **extra}
