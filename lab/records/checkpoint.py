"""A run's checkpoint (``last.ckpt``, Lightning's): read with ``torch.load(weights_only=True)`` only, so that a shared
run folder can never run code when it is read. torch is imported only here, and only when a checkpoint is read."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

CHECKPOINT_KEYS = ("global_step", "state_dict", "optimizer_states", "lr_schedulers", "loops", "callbacks")


class UnsafeCheckpoint(ValueError):
    """A checkpoint that ``torch.load(weights_only=True)`` refuses: it holds objects that would run code when read."""


class Checkpoint:
    """The checkpoint at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self, map_location: Any = "cpu") -> Any:
        """The checkpoint, as ``torch.load(weights_only=True)`` reads it (imports torch): tensors, containers and
        numbers only, never code. A checkpoint that holds anything else (a pickled object, which would run code as
        it is read) raises ``UnsafeCheckpoint``; a torn one raises what torch raises."""
        import pickle

        import torch

        try:
            return torch.load(self.path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:  # what torch raises for a global outside the allow-list
            if "weights only" not in str(e).lower():
                raise
            found = re.search(r"GLOBAL (\S+)", str(e))
            what = f"a pickled {found.group(1)}" if found else "pickled objects"
            raise UnsafeCheckpoint(f"{self.path}: holds {what}, which would run code as it is read, "
                                   f"not only weights; refused unread") from None

    def step(self) -> int:
        """The iteration of the checkpoint, read whole (a torn file fails here, and not halfway into a resume)."""
        state = self.load("cpu")
        if not isinstance(state, dict) or not all(k in state for k in CHECKPOINT_KEYS):
            raise ValueError("not a complete Lightning checkpoint")
        return int(state["global_step"])
