"""The sweep protocol: how a trial of a ``lab sweep`` study goes through its states in the study's storage, and the
user attributes and timeouts that say so (``lab.sweep.coordinator`` makes the transitions, ``lab.sweep.status``
reads them).

A coordinator (``Sweep``: one per ``lab sweep`` command, one per SLURM task) runs ``workers`` trials at a
time. Every coordinator of a study, on any machine, meets the others only in the study's storage, and
a trial goes through these states there (user attributes in capitals are the constants below):

- **WAITING** with its grid point: ``_enqueue`` puts every missing point in the queue once, as a trial
  with the point's values as fixed parameters, ``GRID`` and the point's ``SETTINGS``.
- **RUNNING** with an owner and a heartbeat: ``study.ask()`` hands the oldest waiting trial to exactly
  one coordinator (``_claim``), which sets ``WORKER`` (host:pid:token), ``HEARTBEAT`` (renewed every
  ``HEARTBEAT_S``), ``SLURM_JOB`` under SLURM, ``RUN`` and ``RECORD`` (the run folder), and trains it in a
  child process (``_run``).
- **COMPLETE** with the metric as its value and the summary's metrics as attributes (``_finish``), once
  ``summary.json`` is written.
- **FAIL** with the reason in ``FAILURE``: the run diverged or crashed (``_finish``); its worker died
  (``_reap_stale``: a dead pid on this host, or no heartbeat for ``STALE_AFTER_S`` from any host; its
  point is queued again and the new trial resumes the run from its checkpoint); the task was preempted or
  reached its time limit (``release``: the point is queued again at once with the same parameters and run
  name, ``CONTINUES`` naming the trial it continues, so the run resumes from its checkpoint).
- **PRUNED** with ``PRUNED_AT``: the spec's ``pruner`` stopped the run at that iteration (``_run`` tells Optuna
  the metric at every evaluation, ``trial.report``, and asks ``trial.should_prune``); the run folder says so in
  ``pruned.json``. Its point is taken, like a complete one's: it does not run again.
- **FAIL** with ``STALLED``: the trial's process made no progress for its stall timeout (``StallWatch``: stopped by
  SIGSTOP, hung on a file system or a GPU); it is killed and its point queued again (``_requeue``), once, resuming
  from the checkpoint. While it makes none, ``PROGRESS`` says since when and ``--status`` shows it stalled.
- **PRUNED** with ``SKIPPED``: the point was already held by another trial (two machines enqueueing at
  once: of two unfinished trials of one point the higher number steps aside), or is no longer in the grid.

Timeouts: a heartbeat every ``HEARTBEAT_S`` (30 s) is cheap for any database; ``STALE_AFTER_S`` (600 s,
twenty missed heartbeats) is long enough that a slow database or a paused VM never fails a live trial,
and short next to trials that run for hours. A trial claimed but not yet owned (its coordinator died
inside ``_claim``) is lost after ``CLAIM_LOST_S``. Running the command again resumes: complete points
are skipped, lost ones run again, each point completes once.

One process per trial because W&B and Lightning keep process-wide state (an active ``wandb.run``,
``WANDB_MODE``): trials sharing a process would merge into one W&B run. The processes fork from a
server that imported torch and Lightning once, so a trial starts in well under a second.
"""
from __future__ import annotations

import json
import os
from typing import Any

HEARTBEAT_S = 30  # how often a running trial's coordinator says it is alive
EXIT_DISK_FULL = 75  # a trial process's exit status when it could not write its record (EX_TEMPFAIL)
EXIT_CHECKPOINTED = 76  # a SLURM task's trial process, stopped by a signal after saving its checkpoint
STALE_AFTER_S = 600  # a trial on another host with no heartbeat for this long has lost its worker
CLAIM_LOST_S = 60  # a trial popped by ask() and not owned after this long: its coordinator died in between
LINGER_POLL_S = 5  # how often a SLURM task with nothing to claim looks for lost trials of other tasks
# A trial process that makes no progress (no batch, no checkpoint: lab.train.progress.Pulse) for its stall timeout is
# killed and its point resumed in a new trial. Unless --stall-timeout says otherwise, the timeout is STALL_FACTOR
# times the longest pause the trial has made so far (an evaluation, a checkpoint on a slow disk), at least
# STALL_FLOOR_S; before its first iteration (imports, reading a dataset) at least STARTUP_STALL_S.
STALL_FACTOR, STALL_FLOOR_S, STARTUP_STALL_S = 10, 300, 900
MAX_STALLS = 2  # a point whose trials stall this many times in a row is failed, not queued again

# A trial's user attributes (what lab knows of it; every Optuna tool shows them):
GRID = "grid"  # its grid point, {key: value}
SETTINGS = "settings"  # the point's `when` settings when it was enqueued (a study refuses changed ones)
WORKER = "worker"  # host:pid:token of the coordinator running it
HEARTBEAT = "heartbeat"  # unix time its coordinator last said it is alive
SLURM_JOB = "slurm_job"  # the SLURM job (JOB_TASK of an array) whose coordinator runs it
RUN = "run"  # the run's name, e.g. resnet-56-s0; a continued trial inherits it
RECORD = "record"  # the run folder's absolute path
FAILURE = "failure"  # why it failed
WARNINGS = "warnings"  # a finished run's warnings (lab.health): a loss spike, an end near chance
SKIPPED = "skipped"  # why it was pruned without running
PRUNED_AT = "pruned_at"  # the iteration at which the spec's pruner stopped its run
CONTINUES = "continues"  # the number of the preempted trial whose run this one continues
PROGRESS = "progress"  # {"iteration", "at": its unix time, "stall_after": s, "stalled_since"?}: what the trial reported
STALLED = "stalled"  # how many trials of its point in a row were killed for making no progress
N_PARAMS = "n_params"  # the net's parameter count (Optuna's "params" are the trial's parameters)
# The study's user attributes:
BASE_CONFIG = "base_config"  # the config the study started with, less what varies and track.*
LOST_RECORDS = "lost_records"  # {trial number: problem} of complete trials whose run record is gone
# SLURM_JOBS (lab.sweep.slurm): the SLURM array jobs submitted for the study (lab sweep --launcher slurm)
WANDB_GROUP = "wandb_group"  # the study's W&B group: its name and a short id, set when the study is made


def grid_key(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=True)


def param_value(value: Any) -> Any:
    """A grid value as an Optuna categorical choice: a number, string, bool or None as it is, else its JSON."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value, sort_keys=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
