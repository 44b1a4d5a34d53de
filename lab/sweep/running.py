"""The trial processes a coordinator runs at once (``TrialProcesses``): their claims, GPUs and threads; ``run``
starts one trial process (``lab.sweep.trial``) and watches it to its end (``lab.sweep.watch``); ``release`` and
``stop`` end them all."""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from lab.records import note, set_aside
from lab.sweep import packing
from lab.sweep.ledger import Claim, Ledger
from lab.sweep.outcome import say_ended
from lab.sweep.protocol import FAILURE
from lab.sweep.spec import SweepSpec
from lab.sweep.trial import trial_main
from lab.sweep.watch import Reporter, StallWatch, watch_trial


class TrialProcesses:
    """Up to ``workers`` trial processes of ``spec``'s sweep, their logs in ``log_dir``, in W&B group ``wandb_group``;
    ``stall_timeout``: ``--stall-timeout`` (None: ``StallWatch``'s default)."""

    def __init__(self, spec: SweepSpec, log_dir: Path, workers: int, stall_timeout: float | None, wandb_group: str) -> None:
        self.spec, self.log_dir, self.stall_timeout, self.wandb_group = spec, log_dir, stall_timeout, wandb_group
        self.lock = threading.RLock()
        self.processes: dict[int, tuple[Any, Any]] = {}  # trial number -> (process, trial)
        self.claims: dict[int, Claim] = {}  # trial number -> claim, from its claim until it is settled or released
        self.stopping = False  # no trial starts any more: released, interrupted, or the storage or disk failed
        self.gpus = packing.GpuSlots(packing.visible_gpus())  # several trials per GPU, spread across GPUs
        self.threads_per_trial = packing.threads_per_trial(workers)
        self.mp = multiprocessing.get_context("forkserver")
        # torch, Lightning, W&B and scikit-learn imported once (about 13 s on 2 cores), not per trial
        self.mp.set_forkserver_preload(["lab.sweep.trial", "lab.train", "wandb", "sklearn.datasets"])

    def run(self, claim: Claim, display: Any, started: Callable[[Claim], None]) -> dict[str, Any] | None:
        """Train ``claim``'s run in a trial process, watched until it ends (``started(claim)`` is called once it
        runs; ``display``: the live progress, or None); the run's summary, or None if it did not finish."""
        from lab.records import finished_summary, run_dir_for

        log, run_dir = self.log_dir / f"{claim.run_name}.log", run_dir_for(claim.config, claim.run_name)
        if log.is_symlink():  # planted: the trial and the lines below would write where it points
            note(f"{log}: a symbolic link (to {os.readlink(log)}), which lab never writes; set aside as "
                 f"{set_aside(log).name}")
        gpu = self.gpus.take(claim.config, lambda: self.stopping)  # waits for room on a GPU; None: no GPU
        reports = (display.queue, claim.trial.number) if display is not None else None
        pulse = self.mp.RawArray("d", 2)  # (iteration, time) of the trial's last batch: lab.train.progress.Pulse
        args = (claim.config.to_dict(), claim.run_name, str(log), self.threads_per_trial, os.getpid(), gpu,
                self.wandb_group, reports, pulse, (os.getcwd(), dict(os.environ)))
        proc = self.mp.Process(target=trial_main, args=args, name=claim.run_name)
        try:
            with self.lock:
                if self.stopping:  # released or stopped since the claim: release/stop handle the trial
                    return None
                proc.start()
                self.processes[claim.trial.number] = (proc, claim.trial)
                started(claim)
            watch_trial(proc, claim, Reporter(claim.trial, run_dir, self.spec.metric, claim.config),
                        StallWatch(pulse, self.stall_timeout, time.time()), self.lock,
                        lambda: claim.trial.number in self.claims, self.spec.pruner_name != "none")
        finally:
            self.gpus.give_back(gpu, claim.config)
            if display is not None:
                display.ended(claim.trial.number)
        self.processes.pop(claim.trial.number, None)
        # The summary, written last and atomically, is what makes a run finished: a process that
        # dies while shutting down after writing it (W&B's service, say) has still finished its run.
        summary = finished_summary(run_dir, claim.config)
        say_ended(log, claim, proc.exitcode, summary, self.spec)
        return summary

    def release(self, why: str, ledger: Ledger) -> None:
        """Stop the trials and hand their runs on: each trial fails (``FAILURE`` says why) and its point is queued
        again with its parameters and run name, so that whichever coordinator claims it next (this SLURM task
        requeued, or another) resumes the run from its last checkpoint."""
        from optuna.trial import TrialState

        self.stopping = True
        with self.lock:
            for proc, _ in list(self.processes.values()):
                proc.terminate()  # the trial saves last.ckpt (lab.sweep.trial's checkpoint on signal), atomically, and exits
            for proc, _ in list(self.processes.values()):
                proc.join(timeout=20)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
            for number, claim in list(self.claims.items()):
                claim.trial.set_user_attr(FAILURE, f"released: {why}")
                frozen = ledger.study.tell(claim.trial, state=TrialState.FAIL, skip_if_finished=True)
                self.claims.pop(number, None)
                if frozen.state == TrialState.FAIL:
                    ledger.requeue(claim.trial, f"released ({why})")

    def stop(self, reason: str) -> None:
        """Terminate the trial processes and fail their trials where the storage still answers."""
        from optuna.trial import TrialState

        self.stopping = True
        with self.lock:
            for number, (proc, trial) in list(self.processes.items()):
                proc.terminate()
                self.claims.pop(number, None)
                try:
                    trial.set_user_attr(FAILURE, reason)
                    trial.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                except Exception:  # the storage is what failed: the next run finds the trial's coordinator gone
                    pass
                self.processes.pop(number, None)
