"""A run's checkpoints: ``RecordCheckpoint`` (every run: ``last.ckpt`` after every evaluation, atomically; training
time across attempts) and ``CheckpointOnSignal`` (a SLURM task's trial: ``last.ckpt`` at SIGTERM or SIGUSR1)."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from lab.records import write_atomic_with
from lab.train.classifier import INTERVAL_STATE


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


class CheckpointOnSignal(pl.Callback):
    """A SLURM task's trial: SIGTERM or SIGUSR1 (from SLURM at preemption, or from the coordinator releasing it) saves
    ``last.ckpt`` at the end of the training step under way, and the process exits ``exit_code``: the run resumes
    from that very iteration, not from its last evaluation. Made before ``fit``, its handlers keep Lightning from
    registering its own for SIGTERM."""

    def __init__(self, path: Path, eval_every: int, exit_code: int) -> None:
        self.path, self.eval_every, self.exit_code = Path(path), eval_every, exit_code
        self.received: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, lambda number, frame: self.received.append(number))

    def on_save_checkpoint(self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict) -> None:
        # the training error and loss summed since the last evaluation: a run checkpointed between two
        # evaluations then logs the same averages at the next one as if never stopped
        checkpoint["lab_interval"] = {k: getattr(module, k) for k in INTERVAL_STATE if hasattr(module, k)}

    def on_load_checkpoint(self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict) -> None:
        for key, value in checkpoint.get("lab_interval", {}).items():
            setattr(module, key, value)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        # After a step that an evaluation follows, stop after the evaluation: a checkpoint saved before it
        # would resume past it, and its row would never be logged.
        evaluation_follows = trainer.global_step % self.eval_every == 0 or trainer.global_step >= trainer.max_steps
        if self.received and not evaluation_follows:
            self.stop(trainer, module)

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.received:
            self.stop(trainer, module)

    def stop(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if hasattr(module, "check_finite"):
            module.check_finite()  # a loss gone non-finite since the last check: the run diverged, say so
        write_atomic_with(self.path, trainer.save_checkpoint)  # a kill now leaves the previous checkpoint or this one
        print(f"[lab sweep] {signal.Signals(self.received[0]).name}: checkpoint of iteration {trainer.global_step} "
              f"saved; stopping", flush=True)
        os._exit(self.exit_code)
