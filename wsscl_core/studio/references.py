"""Shipped Retrain references: Retrain's model and scores, built once for the shipped original model,
and the untouched original's own scores on the same forget sets.

Retrain (training from scratch on the retain set with the original's recipe) is the one yardstick
that tells a learner whether an unlearning run was good, and it costs as long as training the
original. For the shipped model the studio therefore ships it, for every single-class forget set
and the default random splits (:data:`REFERENCE_REQUESTS`), built by
``scripts/make_retrain_references.py`` through the one run pipeline (:func:`wsscl_core.runs.run`).

Each reference file holds the Retrain model's weights (float16, to keep the files small), its
unlearning time and its evaluation. The evaluation is computed from the float16 weights loaded back
into the model, so scores and the model the panels draw are the same model. Every file and the
manifest carry the identity of the original they belong to (the dataset's fingerprint and a hash of
the original's weights); :func:`load_references` accepts them only for a workspace with that same
identity, and otherwise says why they are ignored.

The original's scores on those forget sets (the row every table carries) are shipped too, in one file
(:data:`ORIGINAL_SCORES`): scoring the original takes seconds of CPU, and computed while a run trains it
would compete with the run for the same cores.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..data import ASSETS_DIR, ForgetSpec, ForgetSplit, make_forget_split
from ..engine import CancelFlag, ProgressFn
from ..errors import WssclError
from ..metrics import Evaluation
from ..models import Classifier, build_model
from ..runs import RunRequest, RunResult, run, score
from ..workspace import Workspace

REFERENCE_DIR = ASSETS_DIR / "retrain_references"
MANIFEST = "manifest.json"
ORIGINAL_SCORES = "original_scores.pt"
FORMAT = "wsscl-retrain-reference"
ORIGINAL_FORMAT = "wsscl-original-scores"
FORMAT_VERSION = 1
SHIPPED_LABEL = "Retrain (shipped)"
# Every single-class forget set and the random splits the studio offers by default, all at seed 0
# except the 10 % splits, which also have seeds 1 and 2 (the benchmark's seeds).
REFERENCE_REQUESTS: tuple[tuple[ForgetSpec, int], ...] = (
    *((ForgetSpec("class", (c,)), 0) for c in range(10)),
    *((ForgetSpec("random", fraction=0.1, seed=s), s) for s in range(3)),
    (ForgetSpec("random", fraction=0.5, seed=0), 0),
)


# --------------------------------------------------------------------------- identity of an original

def weights_hash(model: torch.nn.Module) -> str:
    """A short hash of a model's state (names, shapes and float values in logical order)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Identity:
    """Which original a reference belongs to: its train set, weights and architecture."""

    dataset_fingerprint: str
    original_weights: str
    model: str

    def describe(self) -> dict[str, str]:
        return {"dataset_fingerprint": self.dataset_fingerprint, "original_weights": self.original_weights,
                "model": self.model}


_IDENTITY_ATTR = "_studio_identity"


def workspace_identity(ws: Workspace) -> Identity:
    """The identity of ``ws``'s original, computed once per workspace object (the original never changes)."""
    cached = ws.__dict__.get(_IDENTITY_ATTR)
    if cached is None:
        cached = Identity(ws.data.fingerprint(), weights_hash(ws.original), ws.model_name)
        ws.__dict__[_IDENTITY_ATTR] = cached
    return cached


# --------------------------------------------------------------------------- files

def reference_name(spec: ForgetSpec, seed: int) -> str:
    """File stem of a reference: ``class-3_seed0``, ``random-0.1-split0_seed0``."""
    if spec.kind == "class":
        return f"class-{'-'.join(map(str, spec.classes))}_seed{seed}"
    return f"random-{spec.fraction:g}-split{spec.seed}_seed{seed}"


def _evaluation_payload(ev: Evaluation) -> dict[str, Any]:
    return {"UA": ev.UA, "RA": ev.RA, "TA": ev.TA, "MIA": ev.MIA, "MIA_AUC": ev.MIA_AUC,
            "TA_remaining": ev.TA_remaining, "forget_classes": list(ev.forget_classes),
            "confusion_test": torch.as_tensor(ev.confusion_test),
            "per_class_test": torch.as_tensor(ev.per_class_test, dtype=torch.float64),
            **{k: torch.as_tensor(getattr(ev, k), dtype=torch.float16)  # histograms only
               for k in ("conf_forget", "conf_retain", "conf_test")}}


def _evaluation_from(payload: dict[str, Any]) -> Evaluation:
    return Evaluation(UA=float(payload["UA"]), RA=float(payload["RA"]), TA=float(payload["TA"]),
                      MIA=float(payload["MIA"]), confusion_test=payload["confusion_test"].numpy(),
                      per_class_test=payload["per_class_test"].numpy(),
                      conf_forget=payload["conf_forget"].float().numpy(), conf_retain=payload["conf_retain"].float().numpy(),
                      conf_test=payload["conf_test"].float().numpy(), forget_classes=tuple(payload["forget_classes"]),
                      TA_remaining=payload["TA_remaining"], MIA_AUC=float(payload["MIA_AUC"]))


def _half_state(model: Classifier) -> dict[str, torch.Tensor]:
    return {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()).contiguous()
            for k, v in model.state_dict().items()}


def _model_from_half(ws: Workspace, state: dict[str, torch.Tensor]) -> Classifier:
    d = ws.data
    model = build_model(ws.model_name, d.channels, d.num_classes, d.mean, d.std)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    return model.to(ws.device).eval()


def build_reference(ws: Workspace, spec: ForgetSpec, seed: int, out_dir: Path | None = None,
                    on_progress: ProgressFn | None = None, cancel: CancelFlag | None = None) -> dict[str, Any]:
    """Run Retrain for ``(spec, seed)`` through the run pipeline, store it as a reference file and
    return its manifest entry. Scores come from the stored float16 weights."""
    out_dir = Path(out_dir or REFERENCE_DIR)
    result = run(ws, RunRequest("retrain", spec, {}, seed), on_progress, cancel)
    state = _half_state(result.model)
    stored = _model_from_half(ws, state)
    evaluation = score(ws, stored, result.split, seed)
    name = reference_name(spec, seed)
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "identity": workspace_identity(ws).describe(),
               "forget": spec.describe(), "seed": seed, "method": "retrain", "rte_s": result.rte_s,
               "config": result.config, "recipe": ws.recipe.to_dict(), "built": _machine(),
               "state_dict": state, "evaluation": _evaluation_payload(evaluation)}
    path = Path(out_dir) / f"{name}.pt"
    _atomic_write(path, payload)
    return {"file": path.name, "forget": spec.describe(), "seed": seed, "rte_s": round(result.rte_s, 2),
            "scores": {k: round(v, 4) for k, v in evaluation.scores().items()}, "bytes": path.stat().st_size,
            "built": payload["built"]}


def _machine() -> dict[str, Any]:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": platform.machine(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "load_average_1min": load}


def _atomic_write(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(payload, (bytes, str)):
                fh.write(payload.encode() if isinstance(payload, str) else payload)
            else:
                torch.save(payload, fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(ws: Workspace, entries: list[dict[str, Any]], out_dir: Path | None = None) -> Path:
    """The manifest: the original's identity and one entry per reference file."""
    out_dir = Path(out_dir or REFERENCE_DIR)
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "identity": workspace_identity(ws).describe(),
                "recipe": ws.recipe.to_dict(), "references": sorted(entries, key=lambda e: e["file"])}
    path = Path(out_dir) / MANIFEST
    _atomic_write(path, json.dumps(manifest, indent=1) + "\n")
    return path


def read_manifest(out_dir: Path | None = None) -> dict[str, Any] | None:
    path = Path(out_dir or REFERENCE_DIR) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def build_original_scores(ws: Workspace, out_dir: Path | None = None,
                          on_scored: Callable[[str, int, int], None] | None = None) -> Path:
    """Score ``ws``'s untouched original on every shipped forget set and store the evaluations in one file;
    ``on_scored(name, done, total)`` after each forget set."""
    evaluations = {}
    for spec, seed in REFERENCE_REQUESTS:
        name = reference_name(spec, seed)
        evaluations[name] = _evaluation_payload(score(ws, ws.original, split_for(ws, spec), seed))
        if on_scored is not None:
            on_scored(name, len(evaluations), len(REFERENCE_REQUESTS))
    path = Path(out_dir or REFERENCE_DIR) / ORIGINAL_SCORES
    _atomic_write(path, {"format": ORIGINAL_FORMAT, "version": FORMAT_VERSION,
                         "identity": workspace_identity(ws).describe(), "built": _machine(),
                         "evaluations": evaluations})
    return path


def shipped_original_scores(ws: Workspace, split: ForgetSplit, seed: int,
                            out_dir: Path | None = None) -> Evaluation | None:
    """The shipped scores of ``ws``'s original on ``split`` at ``seed``; None when none were shipped for
    that forget set or the file belongs to another original."""
    payload = _own_payload(ws, Path(out_dir or REFERENCE_DIR) / ORIGINAL_SCORES, ORIGINAL_FORMAT)
    if payload is None:
        return None
    stored = payload["evaluations"].get(reference_name(_canonical(split.spec), seed))
    return None if stored is None else _evaluation_from(stored)


# --------------------------------------------------------------------------- the studio's view of them

@dataclass
class References:
    """The shipped references usable with one workspace, or a note saying why there are none."""

    available: dict[tuple[ForgetSpec, int], Path] = field(default_factory=dict)
    note: str | None = None
    _loaded: dict[tuple[ForgetSpec, int], RunResult] = field(default_factory=dict, repr=False)

    def has(self, spec: ForgetSpec, seed: int) -> bool:
        return (_canonical(spec), seed) in self.available

    def get(self, ws: Workspace, split: ForgetSplit, seed: int) -> RunResult | None:
        """Retrain for ``split`` at ``seed`` as a run result (model on ``ws.device``), or None without one."""
        key = (_canonical(split.spec), seed)
        if key not in self.available:
            return None
        if key not in self._loaded:
            self._loaded[key] = _load_result(ws, self.available[key], split, seed)
        return self._loaded[key]


def _canonical(spec: ForgetSpec) -> ForgetSpec:
    """Class forget sets do not depend on the spec's split seed; random ones do."""
    if spec.kind == "class":
        return ForgetSpec("class", tuple(sorted(spec.classes)))
    return ForgetSpec("random", fraction=round(spec.fraction, 6), seed=spec.seed)


def _spec_from(described: dict[str, Any]) -> ForgetSpec:
    if described["kind"] == "class":
        return ForgetSpec("class", tuple(described["classes"]))
    return ForgetSpec("random", fraction=float(described["fraction"]), seed=int(described["seed"]))


def load_references(ws: Workspace, out_dir: Path | None = None) -> References:
    """The references in ``out_dir`` that belong to ``ws``'s original; a note when some exist but do not."""
    out_dir = Path(out_dir or REFERENCE_DIR)
    manifest = read_manifest(out_dir)
    if manifest is None or manifest.get("format") != FORMAT:
        return References(note=None if manifest is None else f"{Path(out_dir) / MANIFEST} is not a reference manifest.")
    mine, theirs = workspace_identity(ws).describe(), manifest.get("identity") or {}
    if mine != theirs:
        differs = [k for k in mine if mine[k] != theirs.get(k)]
        return References(note=(
            "The shipped Retrain references were built for another original model (different "
            f"{' and '.join(k.replace('_', ' ') for k in differs)}), so they are not used here; "
            "“Also run Retrain” computes Retrain for this model. (Rebuild them with "
            "scripts/make_retrain_references.py if the shipped model changed.)"))
    available = {}
    for entry in manifest.get("references", []):
        path = Path(out_dir) / entry["file"]
        if path.is_file():
            available[(_canonical(_spec_from(entry["forget"])), int(entry["seed"]))] = path
    return References(available)


def _load_result(ws: Workspace, path: Path, split: ForgetSplit, seed: int) -> RunResult:
    try:
        payload = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WssclError(f"The shipped Retrain reference {path.name} could not be read ({exc}).") from None
    if payload.get("format") != FORMAT or payload.get("identity") != workspace_identity(ws).describe():
        raise WssclError(f"The shipped Retrain reference {path.name} belongs to another original model.")
    model = _model_from_half(ws, payload["state_dict"])
    evaluation = _evaluation_from(payload["evaluation"])
    request = RunRequest("retrain", split.spec, {}, seed)
    return RunResult(request, split, "retrain", SHIPPED_LABEL, model, dict(payload.get("config") or {}), evaluation,
                     float(payload["rte_s"]), 0.0)


def references_total_bytes(out_dir: Path | None = None) -> int:
    return sum(p.stat().st_size for p in Path(out_dir or REFERENCE_DIR).glob("*") if p.is_file())


def missing_requests(ws: Workspace, out_dir: Path | None = None) -> list[tuple[ForgetSpec, int]]:
    """The shipped requests without a valid reference file for ``ws`` yet (what the build script still has to do)."""
    out_dir = Path(out_dir or REFERENCE_DIR)
    todo = []
    for spec, seed in REFERENCE_REQUESTS:
        path = Path(out_dir) / f"{reference_name(spec, seed)}.pt"
        if not _valid_file(ws, path):
            todo.append((spec, seed))
    return todo


def _own_payload(ws: Workspace, path: Path, file_format: str) -> dict[str, Any] | None:
    """``path``'s contents when it is a readable ``file_format`` file built for ``ws``'s original, else None."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except Exception:
        return None
    if payload.get("format") != file_format or payload.get("identity") != workspace_identity(ws).describe():
        return None
    return payload


def _valid_file(ws: Workspace, path: Path) -> bool:
    return _own_payload(ws, path, FORMAT) is not None


def manifest_entry(path: Path) -> dict[str, Any]:
    """The manifest entry of an existing reference file (used when a build is resumed)."""
    payload = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    ev = _evaluation_from(payload["evaluation"])
    return {"file": path.name, "forget": payload["forget"], "seed": payload["seed"],
            "rte_s": round(float(payload["rte_s"]), 2), "scores": {k: round(v, 4) for k, v in ev.scores().items()},
            "bytes": path.stat().st_size, "built": payload.get("built")}


def split_for(ws: Workspace, spec: ForgetSpec) -> ForgetSplit:
    return make_forget_split(ws.data.train.labels, spec, ws.data.num_classes)

