"""Progress a user can see: where each running trial is, how fast, and when the study will end.

A trial process measures itself (``lab.train.progress.TrialProgress``, a Lightning callback: iteration, images/s)
and sends that to its coordinator over a queue; the coordinator (``StudyProgress``) turns it into each trial's ETA and the study's,
from measured throughput: the study's remaining multiply-adds of training (every waiting trial's net, batch and
iterations, as ``lab sweep --dry-run`` counts them, and what running trials have left) over the multiply-adds per
second its running trials reach. On a terminal that is a live display (rich); in a log or a pipe, a line with
``ETA`` when the first measurements come and at most every ``LINE_EVERY_S`` after. ``lab train`` shows
Lightning's progress bar on a terminal and one line per evaluation otherwise (``lab.train.progress``). ``-q``
silences all of it. No Lightning here: a coordinator, ``--status`` and a refused command load no torch for it. None of it goes into ``metrics.jsonl`` or a trial's log: the records hold results only.
"""
from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

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
