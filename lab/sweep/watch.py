"""What a coordinator watches in a running trial (``watch_trial``): its progress (``StallWatch``, from the trial's own
pulse: ``lab.train.progress.Pulse``) and its metric at every evaluation (``Reporter``, for Optuna's pruners and plots)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from lab.config import Config
from lab.sweep.protocol import HEARTBEAT, HEARTBEAT_S, PROGRESS, STALL_FACTOR, STALL_FLOOR_S, STARTUP_STALL_S

PRUNED_KILL_AFTER_S = 30  # a pruned trial's process has this long to end after SIGTERM


def watch_trial(proc: Any, claim: Any, reporter: "Reporter", watch: "StallWatch", lock: Any, is_open: Callable[[], bool],
                pruning: bool) -> None:
    """Until the trial process ``proc`` of ``claim`` (``lab.sweep.ledger.Claim``) ends: tell Optuna its metric
    (``reporter``) and stop it where the pruner says; kill it when it stalls (``watch``); renew the trial's heartbeat
    and progress every ``HEARTBEAT_S``, and at once when a stall starts or ends. ``is_open()``, asked under ``lock``:
    whether the claim is still the coordinator's (not released or stopped meanwhile)."""
    last_beat, said_stalled = time.time(), False
    while proc.is_alive():
        proc.join(timeout=1)
        with lock:
            # reported while not pruned (Optuna holds the values up to the pruner's decision) and still open
            reporting = claim.pruned is None and is_open()
            if reporting and reporter.poll() and pruning and claim.trial.should_prune():
                claim.pruned, claim.pruned_s = reporter.last, time.time()
                proc.terminate()  # the run keeps its record up to its last evaluation's checkpoint
            now = time.time()
            progress = watch.report(now)
            if reporting and claim.stalled is None and watch.idle(now) > watch.limit():
                claim.stalled = watch.idle(now)
                proc.kill()  # SIGKILL: a stopped process takes no other signal until it is continued
            # the heartbeat carries the trial's own progress; a stall is told at once (--status shows it)
            if now - last_beat > HEARTBEAT_S or ("stalled_since" in progress) != said_stalled:
                claim.trial.set_user_attr(HEARTBEAT, now)
                claim.trial.set_user_attr(PROGRESS, progress)
                last_beat, said_stalled = now, "stalled_since" in progress
        if claim.pruned is not None and time.time() - claim.pruned_s > PRUNED_KILL_AFTER_S:
            proc.kill()
    with lock:  # pruned: Optuna holds the values up to the pruner's decision, as its users expect
        if claim.pruned is None and is_open():
            reporter.poll()  # the last evaluations, written just before the process ended


class StallWatch:
    """Whether a trial process still makes progress, from what it writes into ``pulse`` (``lab.train.progress.Pulse``:
    its iteration and the time of its last batch). ``timeout``: ``--stall-timeout`` (None: ``STALL_FACTOR`` times
    the longest pause seen, at least ``STALL_FLOOR_S``). Until the first pulse, at least ``STARTUP_STALL_S``."""

    def __init__(self, pulse: Any, timeout: float | None, started: float) -> None:
        self.pulse, self.timeout = pulse, timeout
        self.seen, self.pulsed, self.longest = started, False, 0.0  # last pulse time; any yet; longest pause

    def limit(self) -> float:
        if not self.pulsed:
            return max(self.timeout or 0.0, STARTUP_STALL_S)
        return self.timeout if self.timeout is not None else max(STALL_FLOOR_S, STALL_FACTOR * self.longest)

    def idle(self, now: float) -> float:
        """Seconds since the trial last made progress (read now)."""
        at = self.pulse[1]
        if at > self.seen:
            if self.pulsed:
                self.longest = max(self.longest, at - self.seen)
            self.seen, self.pulsed = at, True
        return max(0.0, now - self.seen)

    def report(self, now: float) -> dict[str, Any]:
        """The trial's ``PROGRESS`` attribute: its iteration, since when, and (past half its limit) that it stalls."""
        idle, limit = self.idle(now), self.limit()
        report = {"iteration": int(self.pulse[0]), "at": round(self.seen, 1), "stall_after": round(limit)}
        return {**report, "stalled_since": round(self.seen, 1)} if idle >= limit / 2 else report


class Reporter:
    """Tells Optuna a running trial's metric at every evaluation (``trial.report(value, iteration)``), as its
    ``metrics.jsonl`` gains rows: Optuna's intermediate values, what its pruners and plots read."""

    def __init__(self, trial: Any, run_dir: Path, metric: str, config: Config) -> None:
        from lab.records import RunRecord

        self.trial, self.record, self.metric, self.config = trial, RunRecord(run_dir), metric, config
        self.reported: dict[int, float] = {}  # iteration -> value
        self.seen: tuple | None = None
        self.ours = False  # whether the folder holds this trial's run yet (not a replaced run's rows)

    def poll(self) -> bool:
        """Report the rows not reported yet; whether there were any."""
        from lab.records import BEST_VAL_ERR, same_config

        if not self.ours:  # the trial process replaces another config's record when it starts (train(overwrite))
            try:
                self.ours = not self.record.failure_path.exists() and same_config(self.record.read_config(), self.config)
            except Exception:  # missing or being written
                return False
            if not self.ours:
                return False
        try:
            stat = self.record.metrics_path.stat()
        except OSError:
            return False
        if (stat.st_ino, stat.st_size, stat.st_mtime_ns) == self.seen:
            return False
        self.seen = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        rows, _ = self.record.metrics.history()  # a line torn by a crash is left out; its evaluation is logged again
        best, new = float("inf"), False
        for row in sorted(rows, key=lambda r: r["iteration"]):
            if self.metric == BEST_VAL_ERR and "val_err" in row:
                best = min(best, row["val_err"])
            value = best if self.metric == BEST_VAL_ERR and "val_err" in row else row.get(self.metric)
            step = int(row["iteration"])
            if value is None or step in self.reported:
                continue
            self.trial.report(float(value), step)
            self.reported[step] = float(value)
            new = True
        return new

    @property
    def last(self) -> tuple[int, float]:
        step = max(self.reported)
        return step, self.reported[step]
