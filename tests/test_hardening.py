"""Hostile and broken inputs: checkpoint bombs, untrusted metadata, foreign files, bad output paths
and crashes while writing. Each test fails if its protection is removed (damaged dataset folders:
tests/test_data.py)."""

from __future__ import annotations

import collections
import io
import json
import math
import os
import pickle
import struct
import time
import zipfile
from pathlib import Path

import pytest
import torch

from wsscl_core import checkpoints, fileio
from wsscl_core.checkpoints import (DEFAULT_MODEL_FILE, FORMAT, FORMAT_VERSION, checkpoint_budget_for,
                                    checkpoint_byte_budget, load_model, model_from_state, read_checkpoint,
                                    save_checkpoint, state_dict_bytes)
from wsscl_core.data import load_dataset
from wsscl_core.errors import WssclError
from wsscl_core.fileio import (atomic_write, atomic_write_bytes, atomic_write_files, atomic_write_text,
                               check_output_dir, check_output_paths, clean_stale_temp_files)
from wsscl_core.models import build_model


# --------------------------------------------------------------------------- a deflate bomb, built lightly

class _Storage:
    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _Tensor:
    """Pickles like a float32 tensor of ``size`` elements without holding them."""

    def __init__(self, storage: _Storage, size: int) -> None:
        self.storage, self.size = storage, size

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (self.storage, 0, (self.size,), (1,), False, collections.OrderedDict()))


class _TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def write_deflate_bomb(path: Path, numel: int = 100_000_000, chunk: int = 1 << 20) -> Path:
    """What ``torch.save({"w": torch.zeros(numel)}, path)`` writes, with every zip record deflated at
    level 9, but built by streaming zeros: 100 M floats (400 MB) become a ~390 kB file and this
    function never holds more than ``chunk`` bytes of them."""
    template = io.BytesIO()
    torch.save({"w": torch.zeros(1)}, template)
    src = zipfile.ZipFile(template)
    prefix = src.namelist()[0].split("/")[0]
    pkl = io.BytesIO()
    _TorchPickler(pkl, protocol=2).dump({"w": _Tensor(_Storage("0", numel), numel)})
    zeros = bytes(chunk)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for name in src.namelist():
            if name == f"{prefix}/data.pkl":
                out.writestr(name, pkl.getvalue())
            elif name == f"{prefix}/data/0":
                with out.open(name, "w") as fh:
                    left = numel * 4
                    while left:
                        n = min(left, chunk)
                        fh.write(zeros if n == chunk else zeros[:n])
                        left -= n
            else:
                out.writestr(name, src.read(name))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return write_deflate_bomb(tmp_path_factory.mktemp("bomb") / "bomb.pt")


@pytest.fixture()
def no_torch_load(monkeypatch):
    """Fail the test if anything reaches torch.load (where the bomb would be inflated)."""
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called: the file would have been inflated")
    monkeypatch.setattr(checkpoints.torch, "load", refuse)


def test_deflate_bomb_is_refused_before_inflating(bomb, digits, no_torch_load):
    assert bomb.stat().st_size < 1_000_000
    assert sum(i.file_size for i in zipfile.ZipFile(bomb).infolist()) > 400_000_000
    budget = checkpoint_budget_for(digits)
    assert budget < 400_000_000
    for source in (bomb, bomb.read_bytes(), io.BytesIO(bomb.read_bytes())):
        with pytest.raises(WssclError, match=r"refused: its \d+ records unpack to 400\.0 MB .*compressed"):
            read_checkpoint(source, max_bytes=budget)
    with pytest.raises(WssclError, match="unpack to 400.0 MB"):
        load_model(bomb, dataset=digits)  # the dataset sets the budget


def test_default_cap_applies_without_a_model(bomb, monkeypatch, no_torch_load):
    monkeypatch.setattr(checkpoints, "MAX_CHECKPOINT_BYTES", 100_000_000)
    with pytest.raises(WssclError, match="more than the 100.0 MB limit for checkpoints"):
        read_checkpoint(bomb)


def test_budget_helpers_size_the_model(digits):
    compact = build_model("compact", 1, 10)
    assert state_dict_bytes(compact) == sum(t.numel() * t.element_size() for t in compact.state_dict().values())
    margin = checkpoints.CHECKPOINT_MARGIN_BYTES
    assert checkpoint_byte_budget(compact, extra_copies=0) == state_dict_bytes(compact) + margin
    assert checkpoint_budget_for(digits, "compact") == checkpoint_byte_budget(compact)
    assert checkpoint_budget_for(digits) > 3 * 40_000_000  # ResNet-18 with optimiser state fits
    state, _ = read_checkpoint(DEFAULT_MODEL_FILE, max_bytes=checkpoint_budget_for(load_dataset(), "compact"))
    assert "head.weight" in state


def test_oversized_legacy_and_plain_files_are_refused_by_size(tmp_path, no_torch_load):
    legacy = tmp_path / "legacy.pt"
    with open(legacy, "wb") as fh:
        torch.save({"w": torch.zeros(10_000)}, fh, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(legacy)
    for source in (legacy, legacy.read_bytes(), io.BytesIO(legacy.read_bytes())):
        with pytest.raises(WssclError, match=r"refused: it is 40\.\d kB, more than the 10\.0 kB"):
            read_checkpoint(source, max_bytes=10_000)


def test_huge_pickle_and_zip_directory_are_refused(tmp_path, monkeypatch, no_torch_load):
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1), "notes": "x" * (checkpoints.MAX_PICKLE_BYTES + 1)}, buf)
    with pytest.raises(WssclError, match="its pickle .*data.pkl is 4.2 MB"):
        read_checkpoint(buf.getvalue())
    monkeypatch.setattr(checkpoints, "MAX_ZIP_DIRECTORY_BYTES", 100)
    with pytest.raises(WssclError, match="zip table of contents"):
        read_checkpoint(DEFAULT_MODEL_FILE)


# --------------------------------------------------------------------------- metadata and weights

def _raw_checkpoint(state: dict, meta: object) -> bytes:
    """Our format, written without the writer's validation (as a hostile or damaged file would be)."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": FORMAT_VERSION, "state_dict": state, "metadata": meta}, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def grey_state():
    torch.manual_seed(0)
    return {k: v.clone() for k, v in build_model("compact", 1, 10).state_dict().items()}


def _good_meta(digits) -> dict:
    return checkpoints.model_metadata("compact", digits, recipe={"epochs": 3, "lr": 0.05, "batch_size": 64},
                                      seed=0, method="original", metrics={"TA": 90.0})


@pytest.mark.parametrize("change, message", [
    ({"mean": [0.1, 0.2, 0.3]}, r"mean has 3 values but the model takes 1 input channel"),
    ({"mean": "0.5"}, r"mean must be a list of finite numbers, one per input channel, got '0.5'"),
    ({"std": [0]}, r"std must be a list of finite numbers above 0"),
    ({"std": [float("nan")]}, r"std must be a list of finite numbers above 0"),
    ({"in_channels": 3, "mean": [0.5] * 3, "std": [0.2] * 3},
     r"in_channels is 3 but the weights take 1-channel images"),
    ({"in_channels": 2}, r"in_channels must be 1 \(grey\) or 3 \(colour\), got 2"),
    ({"num_classes": 1}, r"num_classes must be a whole number of at least 2, got 1"),
    ({"num_classes": "10"}, r"num_classes must be a whole number"),
    ({"model": "vgg"}, r"model must be one of compact, resnet18"),
    ({"recipe": {"epochs": 3, "lr": 0.05, "batch_size": 0}},
     r"recipe\.batch_size must be a whole number of at least 1, got 0"),
    ({"recipe": {"epochs": 0}}, r"recipe\.epochs must be a whole number of at least 1"),
    ({"recipe": {"lr": float("inf")}}, r"recipe\.lr must be a number above 0"),
    ({"recipe": {"schedule": "bogus"}}, r"recipe\.schedule must be one of constant, cosine, linear"),
    ({"recipe": {"batching": "uneven"}}, r"recipe\.batching must be one of even, ragged"),
    ({"recipe": {"nesterov": True, "momentum": 0.0}}, r"recipe\.nesterov needs a momentum above 0"),
    ({"recipe": [1, 2]}, r"recipe must be a mapping"),
    ({"dataset": "fashion"}, r"dataset must be a mapping"),
    ({"dataset": {"name": "digits", "fingerprint": 7}}, r"dataset\.fingerprint must be a text hash"),
    ({"metrics": {"TA": "high"}}, r"metrics must be a mapping of metric names to numbers"),
])
def test_bad_metadata_is_refused_field_by_field(digits, grey_state, change, message):
    meta = {**_good_meta(digits), **change}
    payload = _raw_checkpoint(grey_state, meta)
    with pytest.raises(WssclError, match=r"^The checkpoint's metadata is not valid: .*" + message):
        read_checkpoint(payload)
    with pytest.raises(WssclError, match=message):
        model_from_state(grey_state, meta)
    with pytest.raises(WssclError, match=message):  # and it is never written
        checkpoints.checkpoint_bytes(build_model("compact", 1, 10), {k: v for k, v in meta.items()
                                                                     if k not in ("format", "version")})


def test_every_bad_field_is_named_and_other_shapes_of_metadata_are_refused(digits, grey_state):
    meta = {**_good_meta(digits), "mean": "x", "recipe": {"batch_size": -1}}
    with pytest.raises(WssclError, match=r"mean must be .*; recipe\.batch_size must be"):
        read_checkpoint(_raw_checkpoint(grey_state, meta))
    with pytest.raises(WssclError, match="metadata must be a mapping, got 'oops'"):
        read_checkpoint(_raw_checkpoint(grey_state, "oops"))
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": 99, "state_dict": grey_state, "metadata": {}}, buf)
    with pytest.raises(WssclError, match="format version 99.*newer wsscl_core"):
        read_checkpoint(buf.getvalue())


def test_bad_metadata_gives_an_error_not_a_traceback_when_opening_a_workspace(digits, grey_state):
    from wsscl_core.workspace import open_workspace

    meta = {**_good_meta(digits), "recipe": {"epochs": 3, "batch_size": 0}}
    with pytest.raises(WssclError, match="recipe.batch_size"):
        open_workspace(_raw_checkpoint(grey_state, meta), digits, device="cpu")


def test_unknown_keys_are_kept_and_version_1_files_load(digits, grey_state):
    meta = {**_good_meta(digits), "future_key": {"anything": [1, 2]}, "recipe": {"epochs": 2, "new_knob": "x"}}
    _, loaded = read_checkpoint(_raw_checkpoint(grey_state, meta))
    assert loaded["future_key"] == {"anything": [1, 2]} and loaded["recipe"]["new_knob"] == "x"
    state, shipped = read_checkpoint(DEFAULT_MODEL_FILE)
    assert shipped["version"] == 1
    model_from_state(state, shipped)


def test_undefined_metrics_are_accepted(digits, grey_state):
    meta = {**_good_meta(digits), "metrics": {"TA": math.nan}}  # an undefined metric is still a number
    read_checkpoint(_raw_checkpoint(grey_state, meta))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("ours", [True, False], ids=["ours", "foreign"])
def test_non_finite_weights_are_refused(digits, grey_state, bad, ours):
    state = {k: v.clone() for k, v in grey_state.items()}
    state["head.weight"][3, 7] = bad
    if ours:
        payload = _raw_checkpoint(state, _good_meta(digits))
    else:
        buf = io.BytesIO()
        torch.save({"state_dict": state}, buf)
        payload = buf.getvalue()
    with pytest.raises(WssclError, match=r"not finite numbers \(NaN or infinity\) in head\.weight"):
        read_checkpoint(payload)


# --------------------------------------------------------------------------- foreign files

def test_safetensors_is_named_as_an_unsupported_format():
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    payload = struct.pack("<Q", len(header)) + header + bytes(4)
    with pytest.raises(WssclError, match="safetensors file, a format this loader does not read") as info:
        read_checkpoint(payload)
    assert "could run code" not in str(info.value)


@pytest.mark.parametrize("content, kind", [
    (b"hello, I am a text file\nrenamed to .pt\n", r"a text file \(it starts with 'hello, I am a text file'\)"),
    (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "an HTML or XML page"),
    (b"\x89HDF\r\n\x1a\n" + bytes(64), "an HDF5 file"),
    (b"\x93NUMPY\x01\x00" + bytes(64), "a NumPy array file"),
])
def test_other_files_renamed_pt_are_named(tmp_path, content, kind):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(WssclError, match=r"^model\.pt is not a readable PyTorch checkpoint: it is " + kind) as info:
        read_checkpoint(path)
    assert "could run code" not in str(info.value)


def test_a_folder_or_device_is_not_read_as_a_checkpoint(tmp_path):
    with pytest.raises(WssclError, match="is a folder"):
        read_checkpoint(tmp_path)
    with pytest.raises(WssclError, match="is not a regular file"):
        read_checkpoint("/dev/zero")  # would never end
    with pytest.raises(WssclError, match="No checkpoint path"):
        read_checkpoint("")


# --------------------------------------------------------------------------- output paths

def test_output_paths_that_cannot_be_written_are_refused_before_any_work(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link_to_dir").symlink_to(tmp_path / "dir")
    cases = [
        (fifo, r"pipe: it is a named pipe \(FIFO\), not a file"),
        (tmp_path / "dir", r"dir: it is a folder, not a file"),
        (tmp_path / "link_to_dir", r"it is a link to a folder"),
        (a_file / "out.pt", r"file\.txt is a file, not a folder"),
        ("/dev/null", r"/dev/null: it is a device, not a file"),
        ("/proc/self/out.pt", r"inside /proc, a system folder"),
        ("/sys/out.pt", r"inside /sys, a system folder"),
        ("", "No path was given"),
        (f"{tmp_path}/new/", "it names a folder"),
    ]
    for path, message in cases:
        with pytest.raises(WssclError, match=message):
            check_output_paths(path)
    same = r"^The metrics JSON and the checkpoint would be the same file \(.*res\.json\)"
    with pytest.raises(WssclError, match=same):
        check_output_paths(tmp_path / "runs" / "res.json", tmp_path / "runs" / ".." / "runs" / "res.json",
                           names=("the checkpoint", "the metrics JSON"))
    assert not (tmp_path / "runs").exists(), "checking creates nothing"


def test_output_paths_that_can_be_written_pass(tmp_path):
    existing = tmp_path / "old.pt"
    existing.write_bytes(b"old")
    (tmp_path / "link.pt").symlink_to(existing)
    paths = check_output_paths(tmp_path / "deep" / "new" / "m.pt", existing, tmp_path / "link2.json",
                               tmp_path / "dangling")
    assert paths[0] == tmp_path / "deep" / "new" / "m.pt"
    check_output_paths(tmp_path / "link.pt")  # a link to a file is replaced by the new file


def test_output_dir_is_checked(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert check_output_dir(tmp_path / "results" / "round2") == tmp_path / "results" / "round2"
    assert check_output_dir(tmp_path) == tmp_path
    for path, message in ((a_file, "it is a file, not a folder"),
                          (a_file / "sub", r"file\.txt is a file, not a folder"), ("/proc/self", "system folder"),
                          ("/dev/null", "it is a device, not a folder"), ("", "No path was given")):
        with pytest.raises(WssclError, match=message):
            check_output_dir(path)


# --------------------------------------------------------------------------- atomic writes

def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_a_crash_inside_the_writer_leaves_no_partial_file_and_no_temp(tmp_path):
    def crashing(fh):
        fh.write(b"half a checkpoint")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        atomic_write(tmp_path / "new.pt", crashing)
    assert _names(tmp_path) == set()
    (tmp_path / "old.pt").write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "old.pt", crashing)
    assert _names(tmp_path) == {"old.pt"} and (tmp_path / "old.pt").read_bytes() == b"previous"


def test_save_checkpoint_crash_leaves_nothing(tmp_path, monkeypatch, trained_copy, digits_trained):
    _, meta = digits_trained
    real_save = torch.save

    def save_then_die(obj, fh, *args, **kwargs):
        real_save(obj, fh, *args, **kwargs)
        fh.truncate(100)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints.torch, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "runs" / "m.pt", trained_copy, meta,
                        extra_files=[(tmp_path / "runs" / "m.json", "{}")])
    assert _names(tmp_path / "runs") == set()


def test_checkpoint_and_json_land_together_or_not_at_all(tmp_path, monkeypatch, trained_copy, digits_trained):
    _, meta = digits_trained
    ckpt, js = tmp_path / "m.pt", tmp_path / "m.json"
    save_checkpoint(ckpt, trained_copy, meta, extra_files=[(js, json.dumps({"run": 1}))])
    assert json.loads(js.read_text()) == {"run": 1} and read_checkpoint(ckpt)[1]["method"] == "original"
    before = ckpt.read_bytes()

    # the JSON's rename fails after the checkpoint's succeeded: the checkpoint is rolled back
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        if Path(dst) == js:
            raise OSError(28, "No space left on device", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", failing_replace)
    with pytest.raises(WssclError, match=r"Could not write .*m\.json: the disk is full\. Nothing was changed\."):
        save_checkpoint(ckpt, trained_copy, {**meta, "note": "second"}, extra_files=[(js, json.dumps({"run": 2}))])
    monkeypatch.undo()
    assert ckpt in [Path(c) for c in calls], "the checkpoint was renamed before the JSON failed"
    assert ckpt.read_bytes() == before and json.loads(js.read_text()) == {"run": 1}
    assert _names(tmp_path) == {"m.pt", "m.json"}

    # a writer failing on the second file: neither file changes
    def crashing(fh):
        raise ValueError("broken result")

    with pytest.raises(ValueError):
        atomic_write_files([(ckpt, b"new checkpoint"), (js, crashing)])
    assert ckpt.read_bytes() == before and _names(tmp_path) == {"m.pt", "m.json"}


def test_leftover_temp_files_of_a_killed_write_are_cleaned(tmp_path, trained_copy, digits_trained):
    _, meta = digits_trained
    try:
        dead_pid = int(Path("/proc/sys/kernel/pid_max").read_text())  # pids stay below pid_max
    except OSError:
        dead_pid = 2 ** 22
    crashed = tmp_path / f".m.pt.{dead_pid}-0123abcd{fileio.TEMP_SUFFIX}"
    crashed.write_bytes(b"")  # what kill -9 during a save leaves
    old = tmp_path / f".r.json.{os.getpid()}-89abcdef{fileio.TEMP_SUFFIX}"
    old.write_text("{")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    running = tmp_path / f".x.pt.{os.getpid()}-feedbeef{fileio.TEMP_SUFFIX}"
    running.write_bytes(b"being written")  # a write in progress (this process, just now)
    mine = tmp_path / "notes.tmp"
    mine.write_text("the user's own file")
    save_checkpoint(tmp_path / "m.pt", trained_copy, meta)
    assert _names(tmp_path) == {"m.pt", running.name, mine.name}
    assert clean_stale_temp_files(tmp_path, max_age_s=0) == [running]
    assert oct(os.stat(tmp_path / "m.pt").st_mode & 0o777) != "0o600"


def test_text_and_bytes_writes_keep_the_usual_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{\"ü\": 1}")
        atomic_write_bytes(tmp_path / "b.csv", b"method,seed\n")
    finally:
        os.umask(umask)
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8")) == {"ü": 1}
    assert (tmp_path / "b.csv").read_bytes() == b"method,seed\n"
    assert os.stat(tmp_path / "a.json").st_mode & 0o777 == 0o644
    os.chmod(tmp_path / "a.json", 0o600)
    atomic_write_text(tmp_path / "a.json", "{}")
    assert os.stat(tmp_path / "a.json").st_mode & 0o777 == 0o600, "a replaced file keeps its mode"


def test_visitors_never_see_tracebacks():
    """A studio served to a class keeps error details in the server log, not in the visitor's browser."""
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"


@pytest.mark.parametrize("argv, message", [
    (["unlearn", "--method", "ft", "--forget", "class:3", "--seed", "-1"], "seed must be 0 or more"),
    (["unlearn", "--method", "ft", "--forget", "random:0.1", "--set", "lr=abc"], "lr must be a float"),
    (["unlearn", "--method", "ft", "--forget", "random:0.1", "--set", "epochs=2.5"], "epochs must be a whole number"),
    (["unlearn", "--method", "ft", "--forget", "class:3", "--dataset", "mnist-ish"], "Unknown dataset"),
    (["unlearn", "--method", "ft", "--forget", "class:3", "--out", "{tmp}/res.json"], "same file"),
    (["bench", "--methods", "ft", "--set", "ft.lr=abc"], "lr must be a float"),
    (["bench", "--methods", "ft", "--set", "wsscl.tau=1"], "not benchmarked"),
    (["bench", "--seeds", "0"], "--seeds must be at least 1"),
    (["bench", "--methods", "ft", "--out-dir", "/dev/null"], "--out-dir"),
    (["train", "--batch-size", "0", "--out", "{tmp}/m.pt"], "batch_size"),
    (["train", "--lr", "nan", "--out", "{tmp}/m.pt"], "lr"),
    (["train", "--out", "/proc/m.pt"], "/proc"),
    (["tune", "--methods", "ft", "--set-nothing"], "unrecognized"),
])
def test_every_cli_argument_is_checked_before_any_data_is_loaded(argv, message, tmp_path, capsys, monkeypatch):
    import wsscl_core.__main__ as cli

    def no_data(*args, **kwargs):
        pytest.fail("data or a model was loaded before the arguments were checked")

    monkeypatch.setattr(cli, "open_workspace", no_data)
    monkeypatch.setattr(cli, "load_dataset", no_data)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        status = cli.main(argv)
    except SystemExit as exc:  # argparse's own refusals
        status = exc.code
    assert status == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_failed_upload_never_changes_the_sessions_model(digits_checkpoint):
    """A checkpoint whose metadata claims 3 input channels for a grey model is refused with the field named,
    and the session keeps the model it had (before, such a file became the session's model and broke the
    Model page)."""
    import io

    import torch
    from streamlit.testing.v1 import AppTest

    payload = torch.load(io.BytesIO(digits_checkpoint), weights_only=True)
    payload["metadata"]["in_channels"] = 3
    buffer = io.BytesIO()
    torch.save(payload, buffer)

    def script(good: bytes, bad: bytes) -> None:
        import streamlit as st

        from pages import session

        if "first" not in st.session_state:
            st.session_state.first = session.adopt_upload(good, "digits", None)
            st.session_state.key_before = st.session_state.workspace_key
        session.adopt_upload(bad, "digits", None)
        st.write(f"kept: {st.session_state.workspace_key == st.session_state.key_before}")

    at = AppTest.from_function(script, args=(digits_checkpoint, buffer.getvalue()), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert any("in_channels" in e.value or "channel" in e.value for e in at.error), [e.value for e in at.error]
    assert at.session_state.first and "kept: True" in [m.value for m in at.markdown]
