"""Writing and reading a record's files safely: nothing half-written (write, then rename), nothing through a link
(``O_EXCL | O_NOFOLLOW``), nothing of unbounded size or nesting read, and a damaged file set aside, never read again.
Every file lab writes into a run or study folder goes through here (``lab.records.run``, the sweep's logs and SLURM
files, the analysis' outputs)."""
from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from lab.config import ConfigError


DAMAGED_SUFFIX = ".damaged"  # a damaged record file set aside: last.ckpt.damaged, summary.json.damaged, ...
# Record files are small (a summary is a few KB, metrics a few hundred bytes per evaluation): anything far larger is
# refused before it is read, as hostile YAML is (lab.config.MAX_FILE_BYTES).
MAX_JSON_BYTES = 16_000_000  # summary.json, failure.json, pruned.json
MAX_RECORD_BYTES = 512_000_000  # metrics.jsonl: a million evaluations


LINK_FIX = ("point track.runs_dir (--runs-dir) at the real folder, or set track.follow_symlinks=true to write through "
            "the link")


def check_folder(path: Path, what: str, follow_symlinks: bool = False,
                 fix: str = "give another track.runs_dir (--runs-dir) or another name", link_fix: str = LINK_FIX) -> None:
    """Refuse (``ConfigError``) a folder lab would write in that is a symbolic link (unless ``follow_symlinks``), is a
    file, or lies under a file."""
    path = Path(path)
    if path.is_symlink() and not follow_symlinks:
        raise ConfigError(f"{path}: the {what} is a symbolic link (to {os.readlink(path)}); lab writes and deletes "
                          f"only inside its own folders, so it is refused: {link_fix}")
    above = path
    while not os.path.lexists(above) and above != above.parent:
        above = above.parent
    if os.path.lexists(above) and not above.is_dir():
        where = f"the {what} is a file" if above == path else f"a file, where the {what} {path} would go"
        raise ConfigError(f"{above}: {where}, not a folder; {fix}")


def note(message: str) -> None:
    """One line on stderr about what was found in a run record and what was done about it."""
    print(f"lab: {message}", file=sys.stderr, flush=True)


# Writing and reading files -----------------------------------------------------------------------------------------

def _create_new(path: Path, mode: int = 0o644) -> int:
    """A new, empty file at ``path``, opened for writing; whatever was there (a ``.tmp`` left by a killed process,
    or one planted as a symbolic link to another file) is removed first (a link goes, never what it points to),
    and the file is made with ``O_EXCL | O_NOFOLLOW``: a write never follows a link out of the folder."""
    path.unlink(missing_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)


def write_atomic_with(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)``, then rename ``tmp`` to ``path``: a reader (or a crash) never sees half a file; a failed write
    (a full disk) leaves no ``.tmp``. ``tmp`` is made new (``_create_new``) before ``write`` opens it."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        os.close(_create_new(tmp))
        write(tmp)
        os.replace(tmp, path)  # a link planted at ``path`` is replaced itself: its target is untouched
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write ``data`` to a new ``.tmp`` (``_create_new``), on disk, then rename it to ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = _create_new(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it (a power cut, not only a crash)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """Write, then rename: a reader (or a crash) never sees half a file."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def loads_json(text: str | bytes) -> Any:
    """``json.loads``, with nesting too deep for Python's parser (``[[[[...`` thousands of levels) a ValueError
    like any other unreadable JSON, not a RecursionError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"nested too deeply (more than Python's {sys.getrecursionlimit()} levels)") from None


def read_text(path: Path, limit: int = MAX_RECORD_BYTES) -> str:
    """A record file's text (UTF-8); one larger than ``limit`` is refused (ValueError) before it is read."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise ValueError(f"{size / 1e6:.0f} MB, larger than a record file can be ({limit / 1e6:.0f} MB)")
        return f.read().decode()


def read_json(path: Path) -> Any:
    """A JSON record file; raises OSError or ValueError (also for nesting too deep, or a file too large)."""
    return loads_json(read_text(Path(path), MAX_JSON_BYTES))


def append_line(path: Path, line: str) -> None:
    """Append ``line`` with one write; a failed or short write (a full disk) is undone, so no torn line is left.
    A link at ``path`` is not followed (``O_NOFOLLOW``: an OSError)."""
    data = line.encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)", str(path))
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def set_aside(path: Path) -> Path:
    """Rename a damaged record file to ``NAME.damaged`` (replacing an older one), kept for inspection."""
    target = path.with_name(path.name + DAMAGED_SUFFIX)
    os.replace(path, target)
    return target


def is_number(value: Any) -> bool:
    """An int or float, not a bool (which Python counts as an int): what a record's numbers must be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def why(e: Exception) -> str:
    """What is wrong with a file that could not be read, in a few words."""
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg}: line {e.lineno} column {e.colno}"
    if isinstance(e, UnicodeDecodeError):
        return f"not UTF-8 text at byte {e.start}"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
