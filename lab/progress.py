"""Progress a user can see: where each running trial is, how fast, and when the study will end.

A trial process measures itself (``TrialProgress``, a Lightning callback: iteration, images/s) and sends that to
its coordinator over a queue; the coordinator (``StudyProgress``) turns it into each trial's ETA and the study's,
from measured throughput: the study's remaining multiply-adds of training (every waiting trial's net, batch and
iterations, as ``lab sweep --dry-run`` counts them, and what running trials have left) over the multiply-adds per
second its running trials reach. On a terminal that is a live display (rich); in a log or a pipe, a line with
``ETA`` when the first measurements come and at most every ``LINE_EVERY_S`` after. ``lab train`` shows
Lightning's progress bar on a terminal and one line per evaluation otherwise (``EvaluationLines``). ``-q``
silences all of it. None of it goes into ``metrics.jsonl`` or a trial's log: the records hold results only.
"""
from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import pytorch_lightning as pl

SEND_EVERY_S = 2.0  # how often a trial process reports where it is
LINE_EVERY_S = 30.0  # how often a sweep writes a progress line into a log or pipe
QUIET_ENV = "LAB_QUIET"  # "1": no progress output (lab -q)


def duration(seconds: float | None) -> str:
    """``1:02:03``, ``4:05``; ``?`` when not known yet."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


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


@dataclass
class Running:
    run: str
    cost: float  # multiply-adds of its whole training (per image x batch x iterations)
    iteration: int = 0
    total: int = 0
    images_per_s: float | None = None
    batch_size: int = 1

    @property
    def eta_s(self) -> float | None:
        if not self.images_per_s:
            return None
        return (self.total - self.iteration) * self.batch_size / self.images_per_s

    @property
    def macs_per_s(self) -> float | None:
        return self.images_per_s * self.cost / (self.total * self.batch_size) if self.images_per_s and self.total else None


class StudyProgress:
    """The coordinator's view: running trials (from their processes' reports) and the study's ETA.

    ``waiting`` (set by the sweep) is the multiply-adds of the trials still to start; the study's ETA is
    that plus what running trials have left, over the multiply-adds per second the running trials reach (the
    latest measurement of each, times the workers), or, once trials have ended, the mean of what they reached.
    """

    def __init__(self, name: str, workers: int, out: Any = None, live: bool | None = None) -> None:
        self.name, self.workers = name, workers
        self.waiting = 0.0  # multiply-adds of the trials still to start: the sweep sets it as trials start and end
        self.out = out or sys.stdout
        self.live = self.out.isatty() if live is None else live
        self.queue: Any = None  # the trial processes' reports: (trial number, iteration, total, images/s)
        self.running: dict[int, Running] = {}
        self.rates: list[float] = []  # multiply-adds per second reached by trials that ended
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.last_line_s = 0.0
        self.display: Any = None

    # --- what the sweep tells it

    def started(self, number: int, run: str, cost: float, batch_size: int, total: int) -> None:
        with self.lock:
            self.running[number] = Running(run, cost, total=total, batch_size=batch_size)

    def ended(self, number: int) -> None:
        with self.lock:
            trial = self.running.pop(number, None)
            if trial is not None and trial.macs_per_s:
                self.rates.append(trial.macs_per_s)

    # --- the study's numbers

    def eta_s(self) -> float | None:
        with self.lock:
            measured = [t.macs_per_s for t in self.running.values() if t.macs_per_s]
            per_worker = (sum(measured) / len(measured)) if measured else (sum(self.rates) / len(self.rates) if self.rates else None)
            left = sum(t.cost * (1 - t.iteration / t.total) for t in self.running.values() if t.total)
        if not per_worker:
            return None
        return (left + self.waiting) / (per_worker * self.workers)

    def line(self) -> str:
        with self.lock:
            trials = [f"{t.run} {t.iteration}/{t.total} at {t.images_per_s or 0:.0f} images/s, ETA {duration(t.eta_s)}"
                      for t in self.running.values()]
        return f"[{self.name}] progress: {'; '.join(trials) or 'no trial running'}; study ETA {duration(self.eta_s())}"

    # --- the display

    def _drain(self) -> bool:
        got = False
        while True:
            try:
                number, iteration, total, rate = self.queue.get_nowait()
            except (queue.Empty, OSError, EOFError, ValueError):
                return got
            with self.lock:
                trial = self.running.get(number)
                if trial is not None:
                    trial.iteration, trial.total, trial.images_per_s = iteration, total, rate or trial.images_per_s
            got = True

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"{self.name}: study ETA {duration(self.eta_s())}", title_justify="left", box=None)
        for column in ("run", "iteration", "images/s", "ETA"):
            table.add_column(column, justify="left" if column == "run" else "right")
        with self.lock:
            for t in self.running.values():
                table.add_row(t.run, f"{t.iteration}/{t.total}", f"{t.images_per_s or 0:.0f}", duration(t.eta_s))
        return table

    def _loop(self) -> None:
        while not self.stop.wait(0.5):
            measured = self._drain()  # always: a full queue would hold up the trial processes
            try:
                if self.live:
                    self.display.update(self._table())
                elif measured and self.eta_s() is not None and (
                        not self.last_line_s or time.monotonic() - self.last_line_s >= LINE_EVERY_S):
                    self.last_line_s = time.monotonic()  # the first line as soon as there is an ETA, then every 30 s
                    print(self.line(), file=self.out, flush=True)
            except Exception:  # a closed pipe, a full disk: progress is never worth a stopped sweep
                pass

    def say(self, line: str) -> None:
        """One of the sweep's own lines (started, done, ...): above the live table on a terminal."""
        if self.display is not None:
            self.display.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=self.out, flush=True)

    def start(self, mp_context: Any) -> None:
        self.queue = mp_context.Queue()
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self.display = Live(self._table(), console=Console(file=self.out), refresh_per_second=2, transient=True)
            self.display.start()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        if self.display is not None:
            self.display.stop()
