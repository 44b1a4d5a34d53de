"""A coordinator (``Sweep``: one per ``lab sweep`` command, one per SLURM task): claims the study's trials, runs each in
a trial process (``lab.sweep.trial``) watched by ``lab.sweep.watch``, and settles it (``lab.sweep.outcome``); the
study's state and its transitions (``lab.sweep.protocol``) are ``lab.sweep.ledger``'s."""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from lab.config import ConfigError, make_config
from lab.progress import QUIET_ENV, StudyProgress
from lab.records import check_folder
from lab.sweep.dryrun import training_cost
from lab.sweep.ledger import Claim, Ledger, check_same_sweep, open_study
from lab.sweep.outcome import settle
from lab.sweep.params import suggest, suggest_grid
from lab.sweep.protocol import (
    CONTINUES,
    FAILURE,
    GRID,
    HEARTBEAT,
    LINGER_POLL_S,
    LOST_RECORDS,
    RECORD,
    RUN,
    SKIPPED,
    SLURM_JOB,
    WANDB_GROUP,
    WORKER,
    grid_key,
)
from lab.sweep.spec import SweepSpec, plain_name, planned_trials
from lab.sweep.storage import StorageUnavailable, disk_full, make_storage
from lab.sweep.running import TrialProcesses
from lab.sweep.trial import error_chain


class SweepStopped(RuntimeError):
    """The sweep could not go on (its storage or disk failed); finished results are kept."""


class Sweep:
    """Runs a study's trials with ``workers`` parallel trial processes on this machine: ``ledger`` holds what the study
    says, ``running`` the trial processes; ``run`` runs them to the end."""

    def __init__(self, name: str, spec: SweepSpec, recipe: dict[str, Any], storage: str | None = None, workers: int = 1,
                 overrides: dict[str, Any] | None = None, out: Any = None, slurm_job: str | None = None,
                 stall_timeout: float | None = None) -> None:
        self.name, self.spec, self.recipe, self.workers, self.out = name, spec, recipe, workers, out or sys.stdout
        self.slurm_job = slurm_job  # JOB_TASK of the SLURM array task this coordinator runs in, if any
        self.linger = slurm_job is not None  # a SLURM task stays while others run, to take over lost trials
        self.released: str | None = None  # the signal that released this coordinator's trials
        self.cli = {**(overrides or {}), "track.study": name}  # the command line's overrides, for every trial
        track = make_config(recipe, spec.overrides({}, self.cli)).track
        self.study_dir = Path(track.runs_dir) / name
        self.log_dir = self.study_dir / "logs"  # made when trials start: a command refused here leaves nothing
        for folder, what in ((self.study_dir, "study folder"), (self.log_dir, "study's logs folder")):
            check_folder(folder, what, track.follow_symlinks)  # no write follows a link out of the runs folder
        study = open_study(name, spec, make_storage(storage, self.study_dir, track.follow_symlinks))
        self.wandb_group = study.user_attrs[WANDB_GROUP]
        self.storage_kind = "database" if storage and "://" in storage else "journal file"
        check_same_sweep(study, name, spec, recipe, self.cli)
        # host:pid:token; the token tells this coordinator from an earlier one that had the same pid
        worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.ledger = Ledger(study, name, spec, self.study_dir, worker_id, self.progress)
        self.running = TrialProcesses(spec, self.log_dir, workers, stall_timeout, self.wandb_group)
        self.started = 0  # trials this coordinator started: none, and a rerun of a finished study trained nothing
        self.display: StudyProgress | None = None  # the live progress while run() runs (lab.progress)
        self.net_sizes: dict[tuple, tuple[int, int]] = {}
        planned = planned_trials(spec, recipe, self.cli)
        self.point_costs = {grid_key(p): training_cost(c, self.net_sizes) for p, (_, c) in zip(spec.grid_points(), planned)}
        self.search_cost = training_cost(planned[0][1], self.net_sizes)
        self.errors: list[Exception] = []

    @property
    def study(self) -> Any:
        return self.ledger.study

    def counts(self) -> dict[str, int]:
        return self.ledger.counts()

    # --- claiming, running and settling one trial ------------------------------------

    def claim(self) -> Claim | None:
        """The next trial this coordinator runs, owned (``WORKER``, ``HEARTBEAT``), its config made and its run folder
        named; None when none is left. Points of lost coordinators are queued again first."""
        from optuna.trial import TrialState

        from lab.records import run_dir_for

        ledger = self.ledger
        with self.running.lock:
            ledger.lost = {int(k) for k in self.study.user_attrs.get(LOST_RECORDS, {})}  # other machines' finds too
            for lost in ledger.reap_stale():
                ledger.requeue(lost, "lost its worker")
            while not self.running.stopping and ledger.budget_left():
                trial = self.study.ask()
                point = trial.user_attrs.get(GRID, {})
                if self.spec.grid and (point not in self.spec.grid_points() or ledger.holder_of(trial, point) is not None):
                    trial.set_user_attr(SKIPPED, "grid point held by another trial or not in the grid")
                    self.study.tell(trial, state=TrialState.PRUNED)
                    continue
                if not suggest_grid(self.study, self.spec, trial, point):  # queued by an older lab, without its parameters
                    trial.set_user_attr(SKIPPED, "queued without its grid parameters; queued again with them")
                    self.study.tell(trial, state=TrialState.PRUNED)
                    ledger.enqueue(point, **{k: trial.user_attrs[k] for k in (RUN, CONTINUES) if k in trial.user_attrs})
                    continue
                trial.set_user_attr(WORKER, ledger.worker_id)
                trial.set_user_attr(HEARTBEAT, time.time())
                if self.slurm_job:
                    trial.set_user_attr(SLURM_JOB, self.slurm_job)
                params = {k: suggest(trial, k, d) for k, d in self.spec.search.items()}
                try:
                    config = make_config(self.recipe, self.spec.overrides(point, self.cli, params))
                except ConfigError as e:  # a sampled value the recipe rejects: this trial fails, the sweep goes on
                    ledger.failed += 1
                    trial.set_user_attr(FAILURE, str(e))
                    self.study.tell(trial, state=TrialState.FAIL)
                    self.progress(f"trial {trial.number} FAILED: {e}")
                    continue
                # a continued trial keeps its run (and so its checkpoint), also a -t# run named after the first trial
                run_name = trial.user_attrs.get(RUN) or (
                    config.run_name if plain_name(self.spec) else f"{config.run_name}-t{trial.number}")
                trial.set_user_attr(RUN, run_name)
                trial.set_user_attr(RECORD, str(run_dir_for(config, run_name).resolve()))
                claim = Claim(trial, config, run_name)
                self.running.claims[trial.number] = claim
                return claim
        return None

    def _started(self, claim: Claim) -> None:
        if self.display is not None:
            self.display.started(claim.trial.number, claim.run_name, training_cost(claim.config, self.net_sizes),
                                 claim.config.optim.batch_size, claim.config.optim.max_steps)
            self.display.waiting = self._waiting_cost()

    def _waiting_cost(self) -> float:
        """Multiply-adds of the trials not started yet (``lab.progress``'s study ETA)."""
        if not self.spec.grid:
            return self.counts()["remaining"] * self.search_cost
        with self.running.lock:
            taken = self.ledger.taken_keys()
        return sum(cost for key, cost in self.point_costs.items() if key not in taken)

    def progress(self, note: str = "") -> None:
        c = self.counts()
        pruned = f", {c['pruned']} pruned" if c["pruned"] else ""
        line = (f"[{self.name}] {c['done']}/{self.spec.total} done{pruned}, {c['running']} running, {c['failed']} failed, "
                f"{c['remaining']} remaining")
        line += f" | {note}" if note else ""
        display = self.display
        if display is not None:
            display.say(line)
        else:
            print(line, file=self.out, flush=True)

    def _worker(self) -> None:
        """One of ``workers`` threads: claim, run and settle trials until none is left."""
        try:
            while True:
                claim = self.claim()
                if claim is None:
                    if self.linger and not self.running.stopping and self.ledger.others_running():
                        time.sleep(LINGER_POLL_S)  # stay to take over trials of tasks that die
                        continue
                    return
                self.started += 1
                self.progress(f"{claim.run_name} started")
                summary = self.running.run(claim, self.display, self._started)
                if summary is None and self.slurm_job and not self.running.stopping:
                    # SLURM signals every process of a preempted job at once: a trial that died of it (or of
                    # its W&B service dying) is not a failed run; the coordinator's signal releases it
                    time.sleep(3)
                if self.running.stopping:
                    return
                with self.running.lock:
                    if self.running.claims.pop(claim.trial.number, None) is not None:  # else released meanwhile (a SLURM signal)
                        said = settle(self.ledger, claim, summary, self.log_dir)
                        if said:
                            self.progress(said)
        except Exception as e:  # the storage became unreachable, the disk is full: stop all, say so in run()
            self.errors.append(e)
            self.running.stop("sweep stopped")

    def queue(self) -> int:
        """Bring the study up to date before trials run (``Ledger.queue``); how many grid points were added."""
        with self.running.lock:
            return self.ledger.queue()

    def run(self) -> dict[str, int]:
        """Run every remaining trial; returns the final counts. Ctrl-C stops the trials and fails them cleanly.

        Under SLURM (``slurm_job``), SIGUSR1 (the job's ``--signal``: its time limit is near, or it is being
        preempted) and SIGTERM (``scancel``) release the running trials (``release``) and return;
        ``self.released`` is then the signal's name (on SIGUSR1 the task requeues itself: ``lab.sweep.slurm``).
        """
        signalled: list[str] = []
        if self.slurm_job:
            for sig in (signal.SIGUSR1, signal.SIGTERM):
                signal.signal(sig, lambda number, frame: signalled.append(signal.Signals(number).name))
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            added = self.queue()
        except Exception as e:
            self.errors.append(e)
            raise stopped(self.errors[0], self.study_dir)
        self.progress(f"storage: {self.storage_kind}, {added} points queued, {self.workers} workers")
        if os.environ.get(QUIET_ENV) != "1":  # where the trials are and when the study ends (lab.progress)
            self.display = StudyProgress(self.name, self.workers, self.out)
            self.display.start(self.running.mp)
        threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(self.workers)]
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=0.5)
                if signalled:
                    self.release(f"SLURM job {self.slurm_job} got {signalled[0]}")
                    self.released = signalled[0]
                    return self.counts()
        except KeyboardInterrupt:
            self.running.stop("interrupted")
            raise
        finally:
            if self.display is not None:
                self.display.close()
                self.display = None
        if self.errors:
            raise stopped(self.errors[0], self.study_dir)
        return self.counts()

    def release(self, why: str) -> None:
        """Stop this coordinator's trials and hand their runs on (``TrialProcesses.release``)."""
        self.running.release(why, self.ledger)

def stopped(error: Exception, study_dir: Path) -> Exception:
    """The error that stopped a sweep's trials, as one line (``SweepStopped``) when it is the storage's or the disk's."""
    safe = f"finished results are safe in {study_dir}"
    full = next((e for e in error_chain(error) if disk_full(e)), None)
    if isinstance(error, StorageUnavailable):
        stop = SweepStopped(f"{error}; {safe}")
    elif full is not None:
        where = f" writing {full.filename}" if full.filename else ""
        stop = SweepStopped(f"the disk is full{where} ({full.strerror}); {safe}; free some space")
    else:
        return error
    stop.__cause__ = full if full is not None and not isinstance(error, StorageUnavailable) else error
    return stop
