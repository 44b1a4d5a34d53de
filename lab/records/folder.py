"""A run folder as a place (``RunFolder``): that it is a folder lab may write (no symbolic link out of the runs
folder), that it holds a run and not something else, and emptying it for a fresh start."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from lab.records.files import DAMAGED_SUFFIX, check_folder, note, set_aside


class RunFolder:
    """The folder ``dir`` of one run; ``record_files``: the names a run record may hold there."""

    def __init__(self, dir: Path, record_files: set[str]) -> None:
        self.dir, self.record_files = Path(dir), record_files

    def check(self, follow_symlinks: bool = False) -> None:
        """Refuse (``ConfigError``, one line) a run folder, or its study folder, that is a symbolic link (training would
        write and delete where it points: unless ``follow_symlinks``, ``track.follow_symlinks``) or is not a folder."""
        check_folder(self.dir.parent, "study folder", follow_symlinks)
        check_folder(self.dir, "run folder", follow_symlinks)

    def set_aside_links(self) -> None:
        """Set aside (``NAME.damaged``, one line each) every symbolic link directly in the run folder: lab writes
        none, and writing through one (``metrics.jsonl`` appended to, ``wandb/`` filled) would write outside it."""
        if not self.dir.is_dir():
            return
        for path in sorted(self.dir.iterdir()):
            if path.is_symlink() and not path.name.endswith(DAMAGED_SUFFIX):
                target = os.readlink(path)
                damaged = set_aside(path)
                note(f"{path}: a symbolic link (to {target}), which lab never writes; set aside as {damaged.name}")

    def clear(self) -> None:
        """Empty the run folder for a fresh start, keeping set-aside damaged files (for inspection; never read again)."""
        if not self.dir.exists():
            self.dir.mkdir(parents=True)
            return
        for path in self.dir.iterdir():
            if path.name.endswith(DAMAGED_SUFFIX):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()

    def not_a_run(self) -> bool:
        """Whether ``dir`` is something else than a run folder (a file, or a folder such as a study's ``analysis/``
        holding none of a run record's files), which training there would wipe."""
        if not self.dir.exists():
            return False
        if not self.dir.is_dir():
            return True
        names = {p.name for p in self.dir.iterdir()}
        return bool(names) and not any(n in self.record_files or n.endswith(DAMAGED_SUFFIX) for n in names)
