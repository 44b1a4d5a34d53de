"""A run's progress from inside its training (Lightning callbacks): ``TrialProgress`` (a trial process tells its
coordinator where it is, ``lab.progress.StudyProgress``), ``Pulse`` (the trial's heartbeat in shared memory, read by
``lab.sweep.watch``), ``EvaluationLines`` and ``progress_bar`` (``lab train``'s own lines or bar)."""
from __future__ import annotations

import sys
import time
from typing import Any, Callable

import pytorch_lightning as pl

from lab.progress import SEND_EVERY_S, duration


class _Throughput(pl.Callback):
    """Images per second since this process began training (a resumed run: since it resumed), evaluations included."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size, self.start_step, self.start_s = batch_size, 0, time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start_step, self.start_s = trainer.global_step, time.perf_counter()

    def rate(self, trainer: pl.Trainer) -> float | None:
        steps, elapsed = trainer.global_step - self.start_step, time.perf_counter() - self.start_s
        return steps * self.batch_size / elapsed if steps > 0 and elapsed > 0 else None


class TrialProgress(_Throughput):
    """In a trial process: ``send(iteration, max_steps, images_per_s)`` every ``SEND_EVERY_S`` and after each
    evaluation (``send`` puts it on the coordinator's queue)."""

    def __init__(self, send: Callable[[int, int, float | None], None], batch_size: int) -> None:
        super().__init__(batch_size)
        self.send, self.last_s = send, 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._send(trainer)

    def _send(self, trainer: pl.Trainer) -> None:
        self.last_s = time.perf_counter()
        try:
            self.send(trainer.global_step, trainer.max_steps, self.rate(trainer))
        except Exception:  # the coordinator's queue is gone: progress is never worth a failed run
            pass

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if time.perf_counter() - self.last_s >= SEND_EVERY_S:
            self._send(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._send(trainer)


class Pulse(pl.Callback):
    """In a trial process: after every training and evaluation batch (and checkpoint), ``(iteration, time.time())``
    into ``shared``, an array of two doubles in shared memory that the coordinator reads (``lab.sweep.StallWatch``):
    the trial's own word that it makes progress, which a stopped (SIGSTOP) or hung process stops giving, though it
    still exists. Two stores per batch, no lock, no message: off the hot path."""

    def __init__(self, shared: Any) -> None:
        self.shared = shared

    def _beat(self, trainer: pl.Trainer, *args: Any) -> None:
        self.shared[0], self.shared[1] = trainer.global_step, time.time()

    on_train_start = on_train_batch_end = on_validation_batch_end = on_save_checkpoint = _beat


class EvaluationLines(_Throughput):
    """``lab train`` outside a terminal: one line per evaluation on stderr (iteration, errors, images/s, ETA)."""

    def __init__(self, run: str, batch_size: int, out: Any = None) -> None:
        super().__init__(batch_size)
        self.run, self.out = run, out or sys.stderr

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rate = self.rate(trainer)
        left = (trainer.max_steps - trainer.global_step) * self.batch_size / rate if rate else None
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k in ("train_err", "val_err")}
        errors = "".join(f", {k} {v:.2f}%" for k, v in metrics.items())
        print(f"{self.run}: iteration {trainer.global_step}/{trainer.max_steps}{errors}, "
              f"{rate or 0:.0f} images/s, ETA {duration(left)}", file=self.out, flush=True)


def progress_bar(run: str) -> pl.Callback:
    """``lab train`` on a terminal: Lightning's progress bar, named after the run, over the run's iterations."""
    from pytorch_lightning.callbacks import TQDMProgressBar

    class RunProgressBar(TQDMProgressBar):
        def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
            super().on_train_epoch_start(trainer, *args)
            self.train_progress_bar.set_description(run)

        def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
            return {k: v for k, v in super().get_metrics(trainer, pl_module).items() if k != "v_num"}  # a folder name

    return RunProgressBar()
