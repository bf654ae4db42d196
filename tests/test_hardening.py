"""Hostile and broken inputs: bad output paths and crashes while writing. Each test fails if its
protection is removed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wsscl_core.errors import WssclError
from wsscl_core.fileio import atomic_write, atomic_write_bytes, atomic_write_text, check_output_dir, check_output_paths


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
