"""Where a study lives: Optuna's journal file (the default, no server) or a database, made safe for long studies.

The journal is an append-only file of JSON lines; a crash or a full disk mid-append used to leave a torn
last line that the next append glued onto, after which no command could read the study. Here an append
that fails is cut back off, and a torn last line found on opening is set aside (kept in ``FILE.torn``).
A database that goes away (a restart, a network blip) is retried for ``LAB_STORAGE_RETRY_S`` seconds
before the sweep stops with one line.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from lab.config import ConfigError

RETRY_S = float(os.environ.get("LAB_STORAGE_RETRY_S", 300))  # how long a database outage is waited out
DISK_FULL_ERRNOS = {28, 27, 122}  # ENOSPC, EFBIG (a file-size limit), EDQUOT


class StorageUnavailable(RuntimeError):
    """The study's database did not answer for ``RETRY_S`` seconds."""


def _journal_backend_class() -> type:
    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal._file import get_lock_file

    class JournalFile(JournalFileBackend):
        """Optuna's journal file whose appends are all or nothing, and which repairs a torn last line."""

        def __init__(self, file_path: str) -> None:
            super().__init__(file_path)
            with get_lock_file(self._lock):  # another coordinator may be appending right now
                check_journal(Path(file_path), repair=True)

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
            with get_lock_file(self._lock):
                fd = os.open(self._file_path, os.O_WRONLY | os.O_APPEND)
                try:
                    size = os.fstat(fd).st_size
                    try:
                        view = memoryview(data)
                        while view:
                            view = view[os.write(fd, view):]
                        os.fsync(fd)
                    except BaseException:  # ENOSPC, a file-size limit, a signal: leave no partial line
                        os.ftruncate(fd, size)
                        raise
                finally:
                    os.close(fd)

    return JournalFile


def check_journal(path: Path, repair: bool = False) -> None:
    """Refuse a journal with a damaged line, naming it; set a torn last line aside when ``repair``."""
    data = path.read_bytes()
    if not data:
        return
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline, as every complete append does
    for number, line in enumerate(lines, start=1):
        try:
            json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested thousands of levels deep
            raise ConfigError(
                f"{path}: line {number} is damaged (not a journal entry), so the study cannot be read; "
                f"restore the file from a backup, or move it aside to start the study afresh "
                f"(finished runs are kept and reused)"
            ) from None
    if torn and repair:
        fd = os.open(f"{path}.torn", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "ab") as f:
            f.write(torn + b"\n")
        os.truncate(path, len(data) - len(torn))
        print(
            f"lab: {path}: line {len(lines) + 1} was cut off mid-write (a crash or a full disk); "
            f"set aside in {path}.torn and left out (the trial it spoke of is recovered on this run)",
            file=sys.stderr,
        )


class Retrying:
    """A storage whose every call is retried while the database is unreachable, for ``RETRY_S`` seconds."""

    def __init__(self, storage: Any, url: str) -> None:
        import sqlalchemy.exc
        from optuna.exceptions import StorageInternalError

        self._storage, self._url = storage, url
        self._transient = (StorageInternalError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._storage, name)
        return self._retried(attr) if callable(attr) else attr

    def _retried(self, call: Callable) -> Callable:
        def retried(*args: Any, **kwargs: Any) -> Any:
            start, delay = time.monotonic(), 0.5
            while True:
                try:
                    return call(*args, **kwargs)
                except self._transient as e:
                    waited = time.monotonic() - start
                    if waited >= RETRY_S:
                        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                        raise StorageUnavailable(
                            f"the study's database {_safe_url(self._url)} did not answer for {waited:.0f}s ({first})"
                        ) from e
                    time.sleep(min(delay, RETRY_S - waited))
                    delay = min(delay * 2, 10)

        return retried


STORAGE_ENV = "LAB_STORAGE"  # the study's storage when --storage is not given: a URL's password stays off command lines


def _safe_url(url: str) -> str:
    """The URL without a password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def has_password(url: str | None) -> bool:
    """Whether a storage URL carries a password (``scheme://user:PASSWORD@host/db``)."""
    if not url or "://" not in url:
        return False
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).password is not None
    except Exception:
        return "@" in url.partition("://")[2]  # unparsable: treated as secret when it has a userinfo part


def shown(url: str | None) -> str | None:
    """A storage as lab prints it and records it: a URL's password as ``***``."""
    return _safe_url(url) if has_password(url) else url


PASSWORD_HINT = ("the password is not shown: give it through LAB_STORAGE=URL (the environment) or, for PostgreSQL, "
                 "in ~/.pgpass (PGPASSFILE), leaving it out of --storage")


def masked_argv(argv: list[str]) -> list[str]:
    """``argv`` with the password of every ``--storage`` URL as ``***``: what W&B records as a trial's command line
    (``sys.argv``) and ``ps`` would show a library reading it."""
    out = list(argv)
    for i, word in enumerate(out):
        if word == "--storage" and i + 1 < len(out):
            out[i + 1] = shown(out[i + 1])
        elif word.startswith("--storage="):
            out[i] = "--storage=" + shown(word.partition("=")[2])
    return out


def make_storage(url: str | None, study_dir: Path, follow_symlinks: bool = False) -> Any:
    """A journal file under the study folder by default (no server); a database URL for many machines.

    The default journal is never a symbolic link (unless ``follow_symlinks``), nor is the folder of a given one a file.
    """
    import optuna
    from optuna.storages import JournalStorage

    if url is None or "://" not in url:
        from lab.records import check_folder

        path = Path(url) if url else study_dir / "optuna.journal"
        if url is None and path.is_symlink() and not follow_symlinks:
            raise ConfigError(f"{path}: the study's journal is a symbolic link (to {os.readlink(path)}); lab writes "
                              f"only inside its own folders: replace it by the file, or set track.follow_symlinks=true")
        if path.is_dir():
            raise ConfigError(f"--storage: {path} is a folder; give a journal file (e.g. {path / 'optuna.journal'}) "
                              f"or a database URL")
        check_folder(path.parent, "journal's folder", follow_symlinks=True, fix="give --storage another journal file")  # a given path may be anywhere
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(_journal_backend_class()(str(path)))
    try:
        rdb = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    except Exception as e:  # sqlalchemy's errors for a bad URL, driver or server
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--storage: cannot open {_safe_url(url)!r}: {first}") from None
    return Retrying(optuna.storages.get_storage(rdb), url)


def disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS
