"""The callbacks every run has: ``RecordCheckpoint`` (``last.ckpt`` after every evaluation, atomically; training time
across attempts)."""
from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl

from lab.records import write_atomic_with


class RecordCheckpoint(pl.Callback):
    """Saves ``last.ckpt`` after every evaluation and at the end, and counts training time across attempts.

    The checkpoint holds model, optimizer, scheduler and loop state; training batches are a function of
    seed and iteration (``TrainStream``), so a run resumed from it continues as if never stopped.
    """

    def __init__(self, path: Path) -> None:
        """``path``: the run's ``last.ckpt`` (``RunRecord.checkpoint_path``)."""
        self.path, self.before_s, self.start = Path(path), 0.0, time.perf_counter()

    def elapsed_s(self) -> float:
        return self.before_s + time.perf_counter() - self.start

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = time.perf_counter()

    def save(self, trainer: pl.Trainer) -> None:
        """Write, then rename: a crash mid-write leaves the previous checkpoint to resume from."""
        write_atomic_with(self.path, trainer.save_checkpoint)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step < trainer.max_steps:  # the final state is saved by train() itself
            self.save(trainer)

    def state_dict(self) -> dict[str, float]:
        return {"elapsed_s": self.elapsed_s()}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.before_s = state["elapsed_s"]
