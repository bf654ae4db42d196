"""Writing files safely: output paths checked before any work, atomic writes, and cleanup after crashes.

Every file the library writes goes through :func:`atomic_write_files`: each file is written to a
temp file in its target folder, flushed and fsynced, then renamed over the target with
``os.replace``. A reader therefore sees either the old file or the complete new one, never a
partial one. Temp files are named ``.<name>.<pid>-<token>.wsscl.tmp``; a process killed mid-write
(``kill -9``, power loss) can leave one behind, and :func:`clean_stale_temp_files` (run on every
write into the folder) removes those whose writer is gone.

Call :func:`check_output_paths` / :func:`check_output_dir` at the start of a command, before
training or unlearning, so that a bad ``--out`` fails in a second, not after the run.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
import time
from pathlib import Path
from typing import BinaryIO, Callable, Sequence, Union

from .errors import WssclError

PathLike = Union[str, "os.PathLike[str]"]
Content = Union[bytes, str, Callable[[BinaryIO], None]]

TEMP_SUFFIX = ".wsscl.tmp"
# Folders no output may go into, however writable they look.
FORBIDDEN_DIRS = (Path("/proc"), Path("/sys"))
# A temp file whose writer still runs (same pid) is only taken for stale after this long.
STALE_TEMP_AGE_S = 3600.0

_TEMP_RE = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)-(?P<token>[0-9a-f]{8})" + re.escape(TEMP_SUFFIX) + "$")
_KINDS = ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


# --------------------------------------------------------------------------- checking paths

def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _refuse_system_dir(path: Path, label: str) -> None:
    real = Path(os.path.realpath(path))
    for root in FORBIDDEN_DIRS:
        if real == root or root in real.parents:
            raise WssclError(f"Cannot write {label} {path}: it is inside {root}, a system folder.")


def _check_parent(path: Path, label: str) -> None:
    """The folder of ``path`` exists and is writable, or can be created inside a writable folder."""
    folder = Path(os.path.abspath(path)).parent
    while True:
        try:
            st = os.stat(folder)
        except FileNotFoundError:
            if folder.parent == folder:
                break
            folder = folder.parent
            continue
        except NotADirectoryError:  # some ancestor is a file; keep walking up to find it
            folder = folder.parent
            continue
        except OSError as exc:
            raise WssclError(f"Cannot write {label} {path}: {folder} cannot be read ({exc.strerror}).") from None
        if not stat.S_ISDIR(st.st_mode):
            raise WssclError(f"Cannot write {label} {path}: {folder} is {_kind(st.st_mode)}, not a folder.")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise WssclError(f"Cannot write {label} {path}: the folder {folder} is not writable.")
        return


def _check_target(path: Path, label: str) -> None:
    """``path`` is absent, a regular file, or a link to one (the link is replaced, not written through)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise WssclError(f"Cannot write {label} {path}: {exc.strerror}.") from None
    if stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISLNK(st.st_mode):
        try:
            st = os.stat(path)
        except OSError:
            return  # a dangling link: the new file replaces it
        if stat.S_ISREG(st.st_mode):
            return
        raise WssclError(f"Cannot write {label} {path}: it is a link to {_kind(st.st_mode)}, not to a file.")
    raise WssclError(f"Cannot write {label} {path}: it is {_kind(st.st_mode)}, not a file.")


def check_output_paths(*paths: PathLike, names: Sequence[str] = ()) -> list[Path]:
    """Check files about to be written, before any work; return them as :class:`Path` s.

    Each path must name a file (not end in ``/``) outside ``/proc`` and ``/sys``; its folder must be
    a writable folder or be creatable inside one (missing folders are created when the file is
    written); the path itself must be absent, a regular file, or a link to one (a link is replaced
    by the new file); and no two paths may be the same file. ``names`` label the paths in messages
    ("the checkpoint", "the metrics JSON"). Raises :class:`WssclError` with one line otherwise.
    """
    labels = [names[i] if i < len(names) else "the output file" for i in range(len(paths))]
    out: list[Path] = []
    seen: dict[str, int] = {}
    for i, (raw, label) in enumerate(zip(paths, labels)):
        text = os.fspath(raw)
        if not text.strip():
            raise WssclError(f"No path was given for {label}.")
        path = Path(text)
        if text.endswith(("/", os.sep)) or path.name in ("", ".", ".."):
            raise WssclError(f"Cannot write {label} {text}: it names a folder; give a file name.")
        _refuse_system_dir(path, label)
        _check_parent(path, label)
        _check_target(path, label)
        key = os.path.realpath(path)
        if key in seen:
            j = seen[key]
            first = labels[j] if labels[j] != label else f"output {j + 1}"
            raise WssclError(f"{label[:1].upper() + label[1:]} and {first} would be the same file ({text}); "
                             "give them different names.")
        seen[key] = i
        out.append(path)
    return out


def check_output_dir(path: PathLike, name: str = "the output folder") -> Path:
    """Check a folder about to receive files: it exists and is writable, or can be created inside a
    writable folder (it is then created when the first file is written); not a file, not inside
    ``/proc`` or ``/sys``. Raises :class:`WssclError` with one line otherwise."""
    text = os.fspath(path)
    if not text.strip():
        raise WssclError(f"No path was given for {name}.")
    folder = Path(text)
    _refuse_system_dir(folder, name)
    try:
        st = os.stat(folder)
    except (FileNotFoundError, NotADirectoryError):
        _check_parent(folder, name)
        return folder
    except OSError as exc:
        raise WssclError(f"Cannot write into {name} {folder}: {exc.strerror}.") from None
    if not stat.S_ISDIR(st.st_mode):
        raise WssclError(f"Cannot write into {name} {folder}: it is {_kind(st.st_mode)}, not a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise WssclError(f"Cannot write into {name} {folder}: it is not writable.")
    return folder


# --------------------------------------------------------------------------- temp files

def _temp_path(target: Path) -> Path:
    stem = target.name[:160]  # the temp name must stay within the 255-byte name limit
    return target.with_name(f".{stem}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or an odd number): keep its file
    return True


def is_temp_file(path: PathLike) -> bool:
    """Whether ``path`` is named like a temp file of :func:`atomic_write_files`."""
    return _TEMP_RE.match(Path(path).name) is not None


def clean_stale_temp_files(folder: PathLike, max_age_s: float = STALE_TEMP_AGE_S) -> list[Path]:
    """Remove temp files left in ``folder`` by writes that crashed; return what was removed.

    Only names of our own pattern (``.<name>.<pid>-<token>.wsscl.tmp``) are touched. A temp file is
    stale when the process that wrote it no longer runs on this machine, or when it is older than
    ``max_age_s`` (process ids get reused). Writers on other machines sharing the folder are not
    known here: on a shared network folder a running write of another host can lose its temp file
    (that write then fails; no file is corrupted).
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if not m:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                continue
            if _pid_alive(int(m["pid"])) and now - st.st_mtime <= max_age_s:
                continue
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


# --------------------------------------------------------------------------- atomic writes

def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_temp(target: Path, content: Content) -> Path:
    tmp = _temp_path(target)
    # O_EXCL on a fresh random name: never follows a planted link. Mode 0o666 minus the umask (the
    # usual mode of a new file); a file being replaced keeps its permission bits.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            try:
                os.fchmod(fh.fileno(), stat.S_IMODE(os.stat(target).st_mode))
            except OSError:
                pass
            if callable(content):
                content(fh)
            else:
                fh.write(content.encode("utf-8") if isinstance(content, str) else content)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _backup(target: Path) -> Path | None:
    """A second name for the file now at ``target`` (a hard link; a copy where links are not allowed)."""
    if not os.path.lexists(target):
        return None
    backup = _temp_path(target)
    try:
        os.link(target, backup, follow_symlinks=False)
    except OSError:
        shutil.copy2(target, backup, follow_symlinks=False)
    return backup


def atomic_write_files(files: Sequence[tuple[PathLike, Content]]) -> list[Path]:
    """Write several files so that they land together or not at all; return their paths.

    ``files`` is a sequence of ``(path, content)``; content is bytes, text (written as UTF-8) or a
    function that writes into a binary file object (e.g. ``lambda fh: torch.save(obj, fh)``).

    All files are first written to temp files beside their targets and fsynced; only then are the
    temp files renamed over the targets, in the given order, so put the file that marks a finished
    result (a metrics JSON) last. Guarantees: if this function raises (an error in a writer, a full
    disk, Ctrl-C), every target keeps its previous content (or stays absent) and no temp file
    remains. A process killed between two renames (``kill -9``) leaves the earlier targets new and
    the later ones old, so the last file is only new when all the others are; no target is ever
    partial. After a power loss, renames not yet flushed to disk may be lost; whether their order
    survives depends on the file system (journalling ones such as ext4 keep it). Temp files left
    by a killed process are removed by :func:`clean_stale_temp_files`, which runs on each write
    into the folder.

    Paths are checked with :func:`check_output_paths` first; missing folders are created.
    Operating-system errors (disk full, permission denied) become :class:`WssclError`.
    """
    if not files:
        return []
    paths = check_output_paths(*(p for p, _ in files))
    contents = [c for _, c in files]
    for folder in dict.fromkeys(p.parent for p in paths):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WssclError(f"Cannot create the folder {folder}: {exc.strerror}.") from None
        clean_stale_temp_files(folder)
    temps: list[Path] = []
    backups: list[Path | None] = []
    placed: list[Path] = []
    current = paths[0]
    try:
        for current, content in zip(paths, contents):
            temps.append(_write_temp(current, content))
        for current, tmp in zip(paths, temps):
            if len(paths) > 1:
                backups.append(_backup(current))
            os.replace(tmp, current)
            placed.append(current)
    except BaseException as exc:
        unrestored = []
        for path, backup in reversed(list(zip(placed, backups))):
            try:
                if backup is not None:
                    os.replace(backup, path)
                else:
                    path.unlink(missing_ok=True)
            except OSError:
                unrestored.append(path)
        for leftover in [*temps, *backups]:
            if leftover is not None:
                leftover.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            outcome = ("Nothing was changed." if not unrestored else
                       f"{', '.join(map(str, unrestored))} could not be put back as it was.")
            raise WssclError(f"Could not write {current}: {reason}. {outcome}") from exc
        raise
    for backup in backups:
        if backup is not None:
            backup.unlink(missing_ok=True)
    for folder in dict.fromkeys(p.parent for p in paths):
        _fsync_dir(folder)
    return paths


def atomic_write(path: PathLike, content: Content) -> Path:
    """Write one file atomically (temp file in the same folder, fsync, rename); see :func:`atomic_write_files`."""
    return atomic_write_files([(path, content)])[0]


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a reader sees the old file or the whole new one."""
    return atomic_write(path, bytes(data))


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically: a reader sees the old file or the whole new one."""
    return atomic_write(path, str(text))
