"""Checkpoint round trips, foreign formats, and refusal of untrusted or mismatched files."""

import io
import os
import pickle
from collections import OrderedDict

import pytest
import torch

from wsscl_core.checkpoints import (DEFAULT_MODEL_FILE, checkpoint_bytes, load_model, model_metadata, read_checkpoint,
                                    save_checkpoint)
from wsscl_core.errors import WssclError
from wsscl_core.metrics import predict_logits
from wsscl_core.models import build_model
from wsscl_core.workspace import open_workspace


def _same_outputs(a, b, images):
    return torch.allclose(predict_logits(a, images), predict_logits(b, images))


def test_round_trip_keeps_weights_and_metadata(tmp_path, digits, digits_trained):
    model, meta = digits_trained
    path = save_checkpoint(tmp_path / "m.pt", model, {**meta, "note": "hello"})
    loaded, loaded_meta = load_model(path, dataset=digits)
    assert _same_outputs(model, loaded, digits.test.images[:50])
    assert loaded_meta["note"] == "hello" and loaded_meta["recipe"]["epochs"] == meta["recipe"]["epochs"]
    assert loaded_meta["dataset"]["fingerprint"] == digits.fingerprint()
    assert not list(tmp_path.glob("*.tmp")), "atomic save leaves no temp file"
    assert oct(os.stat(path).st_mode & 0o777) != "0o600"


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"state_dict": sd},
    lambda sd: {"model": sd, "epoch": 3},
    lambda sd: {"state_dict": OrderedDict(("module." + k, v) for k, v in sd.items())},
    lambda sd: OrderedDict(("module." + k, v) for k, v in sd.items()),
])
def test_foreign_formats_load(digits, digits_trained, wrap):
    model, _ = digits_trained
    foreign = _torch_bytes(wrap(model.state_dict()))
    loaded, meta = load_model(foreign, dataset=digits)
    assert meta["model"] == "compact"  # detected from the keys
    assert _same_outputs(model, loaded, digits.test.images[:50])


def test_torchvision_resnet18_checkpoints_are_detected(digits):
    for name, kernel in (("resnet18", 3), ("resnet18-imagenet-stem", 7)):
        src = build_model(name, 1, 10)
        loaded, meta = load_model(_torch_bytes({"state_dict": src.state_dict()}), dataset=digits)
        assert meta["model"] == name and loaded.conv1.kernel_size == (kernel, kernel)


class _WritesMarker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_that_runs_code_is_refused(tmp_path, digits):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _WritesMarker(str(marker))}, evil,
               pickle_protocol=2)
    with pytest.raises(WssclError, match="refused"):
        load_model(evil, dataset=digits)
    assert not marker.exists(), "loading must never execute pickled code"
    # a plain pickle (not torch.save) is refused just the same
    raw = pickle.dumps(_WritesMarker(str(marker)))
    with pytest.raises(WssclError):
        read_checkpoint(raw)
    assert not marker.exists()


@pytest.mark.parametrize("content, message", [
    (b"", "empty"), (b"hello, I am a text file", "not a readable PyTorch checkpoint"),
])
def test_non_checkpoints_are_named(content, message):
    with pytest.raises(WssclError, match=message):
        read_checkpoint(content)


def test_truncated_checkpoint(digits_checkpoint):
    with pytest.raises(WssclError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(digits_checkpoint[: len(digits_checkpoint) // 2])


def test_no_weights_inside():
    with pytest.raises(WssclError, match="no model weights"):
        read_checkpoint(_torch_bytes({"epoch": 3, "lr": 0.1}))


def test_mismatch_names_keys_and_shapes(digits):
    hundred = build_model("compact", 1, 100).state_dict()
    with pytest.raises(WssclError, match=r"head\.weight: file \(100, 512\) vs model \(10, 512\)"):
        load_model(_torch_bytes(hundred), dataset=digits)
    rgb = build_model("compact", 3, 10).state_dict()
    with pytest.raises(WssclError, match=r"body\.0\.0\.weight.*\(32, 3, 3, 3\)"):
        load_model(_torch_bytes(rgb), dataset=digits)
    resnet = build_model("resnet18", 1, 10).state_dict()
    with pytest.raises(WssclError, match="(?s)Missing keys.*Unexpected keys.*look like a 'resnet18'"):
        load_model(_torch_bytes(resnet), dataset=digits, model_name="compact")


def test_checkpoint_trained_on_other_data_is_refused(digits, digits_trained):
    model, meta = digits_trained
    meta = {**meta, "dataset": {**meta["dataset"], "fingerprint": "0000000000000000"}}
    with pytest.raises(WssclError, match="different train set"):
        open_workspace(checkpoint_bytes(model, meta), digits, device="cpu")


def test_shipped_model_loads_with_its_dataset():
    ws = open_workspace(device="cpu")
    assert ws.data.name == "fashion-mnist-subset" and ws.model_name == "compact"
    assert ws.metadata["metrics"]["TA"] > 80
    assert DEFAULT_MODEL_FILE.is_file()


def test_metadata_is_weights_only_safe(digits, trained_copy):
    meta = model_metadata("compact", digits, recipe={"epochs": 1}, metrics={"TA": 1.0})
    state, loaded = read_checkpoint(checkpoint_bytes(trained_copy, meta))
    assert loaded["dataset"]["name"] == "digits" and "head.weight" in state


def test_cli_refuses_code_carrying_checkpoint(tmp_path, capsys):
    from wsscl_core.__main__ import main

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _WritesMarker(str(marker))}, evil)
    assert main(["unlearn", "--checkpoint", str(evil), "--dataset", "digits", "--method", "ft",
                 "--forget", "class:1", "--device", "cpu"]) == 2
    assert "refused" in capsys.readouterr().err
    assert not marker.exists()
