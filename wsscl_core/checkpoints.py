"""Safe checkpoint load/save with metadata, and checkpoints from other tools.

Loading always uses ``torch.load(weights_only=True)``: an uploaded file can carry tensors and
plain containers, never code. Saving is atomic (temp file + rename), so a crash never leaves a
half-written checkpoint behind.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from .data import Dataset
from .errors import WssclError
from .models import MODELS, Classifier, build_model

FORMAT = "wsscl-checkpoint"
FORMAT_VERSION = 1
DEFAULT_MODEL_FILE = Path(__file__).resolve().parent.parent / "assets" / "default_model.pt"
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")


def _payload(model: nn.Module, metadata: dict) -> dict:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **metadata}
    return {"format": FORMAT, "version": FORMAT_VERSION, "state_dict": state, "metadata": meta}


def checkpoint_bytes(model: nn.Module, metadata: dict) -> bytes:
    """The checkpoint as bytes (for a download button)."""
    buf = io.BytesIO()
    torch.save(_payload(model, metadata), buf)
    return buf.getvalue()


def save_checkpoint(path: str | Path, model: nn.Module, metadata: dict) -> Path:
    """Write atomically: a temp file in the same folder, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(_payload(model, metadata), fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                        for k, v in obj.items())


def _unwrap(obj: object) -> tuple[dict[str, torch.Tensor], dict]:
    """Find the state dict inside our format or a foreign wrapper; strip DataParallel prefixes."""
    metadata: dict = {}
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        metadata = dict(obj.get("metadata") or {})
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


def read_checkpoint(source: str | Path | bytes | BinaryIO) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, metadata) from a path, bytes or file object, never executing pickled code."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise WssclError(f"Checkpoint {path} does not exist.")
        data = path.read_bytes()
        name = path.name
    else:
        data = source if isinstance(source, bytes) else source.read()
        name = "the uploaded file"
    if not data:
        raise WssclError(f"{name} is empty.")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise WssclError(f"{name} is not a readable PyTorch checkpoint: {str(exc).splitlines()[0][:200]}") from None
        first = str(exc).strip().splitlines()
        detail = next((ln for ln in first if "GLOBAL" in ln or "Unsupported" in ln), first[0] if first else "")
        raise WssclError(f"{name} was refused: it contains Python objects other than tensors and plain data, "
                         f"which could run code when loaded. ({detail.strip()[:200]})") from None
    except Exception as exc:  # the legacy and zip readers fail in many ways on foreign bytes
        raise WssclError(f"{name} is not a readable PyTorch checkpoint (truncated or a different file type): "
                         f"{str(exc).splitlines()[0][:200]}") from None
    return _unwrap(obj)


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
    if len(mean) != len(std) or not all(v > 0 for v in std):
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
               model_name: str | None = None, device: torch.device | str = "cpu") -> tuple[Classifier, dict]:
    """Read a checkpoint safely and build its model (see :func:`model_from_state`)."""
    state, meta = read_checkpoint(source)
    return model_from_state(state, meta, dataset=dataset, model_name=model_name, device=device)


def model_from_state(state: dict[str, torch.Tensor], meta: dict, *, dataset: Dataset | None = None,
                     model_name: str | None = None, device: torch.device | str = "cpu") -> tuple[Classifier, dict]:
    """Build the right architecture and load weights into it.

    Our own checkpoints carry their architecture and normalisation. For a foreign one, the
    architecture comes from ``model_name`` or is detected from its keys, and classes/channels
    come from ``dataset``. Any mismatch raises :class:`WssclError` naming the keys and shapes.
    """
    state, buffer_mean, buffer_std = take_input_normalisation(state)
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
    elif "num_classes" in meta:
        num_classes, channels, mean, std = meta["num_classes"], meta["in_channels"], meta.get("mean"), meta.get("std")
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
    """The metadata block every checkpoint we write carries."""
    return {"model": model_name, "num_classes": dataset.num_classes, "in_channels": dataset.channels,
            "mean": list(dataset.mean), "std": list(dataset.std), "dataset": dataset.describe(), **extra}
