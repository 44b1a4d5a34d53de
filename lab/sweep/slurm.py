"""``lab sweep NAME --launcher slurm``: the study's coordinators as the tasks of one SLURM array job.

Each task runs ``lab sweep NAME --task`` (a coordinator, ``lab.sweep.Sweep``) against the study's database;
the tasks meet only there, and in the shared runs folder. SLURM schedules, preempts and requeues them;
``lab`` makes a requeued task pick up where it stopped:

- the job asks SLURM for ``--signal=B:USR1@SIGNAL_S`` (before its time limit) and, with
  ``SlurmctldParameters=preempt_send_user_signal``, the same signal at preemption; the coordinator is the
  batch shell itself (``exec``), so it gets it. It then stops its trial processes (each saves ``last.ckpt``
  at the end of its step under way, ``lab.train.callbacks.CheckpointOnSignal``; never torn), fails their trials with the reason and queues their points
  again with the same parameters and run name (``Sweep.release``), and requeues its job
  (``scontrol requeue``; a preempted job is requeued by SLURM anyway). SIGTERM alone (``scancel``)
  hands the trials on the same way, and the task ends. Whichever task claims such a point
  (another, or this one when it runs again) resumes the run from its checkpoint, exactly.
- A task that dies without a signal (node failure, ``scancel -s KILL``, out of memory) leaves its trial
  RUNNING; a live task (tasks stay while others' trials run) fails it as lost (its pid gone on that host,
  or no heartbeat for ``STALE_AFTER_S``) and runs its point again, once, from the checkpoint.
- Lightning never sees SLURM in a trial process (its ``SLURM_*`` variables are dropped there): its own
  auto-requeue (which would requeue from inside a trial) stays off, and one component owns the requeue.

``sbatch`` is called directly (no submitit): the status of the study comes from the study's storage, and
the jobs still queued from ``squeue``; nothing depends on SLURM's accounting (``sacct``, ``slurmdbd``).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.config import ConfigError, quote
from lab.sweep.storage import STORAGE_ENV

SIGNAL_S = 120  # USR1 this long before the time limit: time to stop trials and tell the study
LAUNCHERS = ("local", "slurm")
PARTITION = re.compile(r"[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*")
TIME = re.compile(r"[0-9]+(-[0-9]+)?(:[0-9]+){0,2}")
SLURM_JOBS = "slurm_jobs"  # the study's user attribute: the array jobs submitted for it, {"job", "tasks", "submitted", "script"}
STORAGE_FILE = "storage.url"  # in the study's slurm/ folder, mode 0600: a storage URL with a password, for the tasks


def sbatch_value(value: str) -> str:
    """``value`` as one argument of an ``#SBATCH`` line: sbatch's own parser (not a shell) reads double quotes and
    backslash escapes, and takes an unescaped ``#`` as the start of a comment."""
    return '"' + re.sub(r'([\\"#])', r"\\\1", value) + '"'


def job_name(name: str) -> str:
    """The SLURM job name of a study: ``lab-NAME``, with what is not a letter, digit, ``_ . -`` as ``_``."""
    return "lab-" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)


@dataclass
class SlurmOptions:
    """What a cluster needs to know of each task; ``None`` leaves it to the cluster's defaults."""

    tasks: int = 1  # coordinators (array tasks), each running ``workers`` trials at a time
    partition: str | None = None
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    time: str | None = None  # SLURM's time format: MINUTES, HH:MM:SS, D-HH:MM:SS
    sbatch: list[str] = field(default_factory=list)  # extra #SBATCH lines, e.g. --qos=high, --account=lab

    def check(self) -> None:
        """Every value that goes into the sbatch script is one SLURM can mean: nothing else reaches the script."""
        if self.tasks < 1:
            raise ConfigError(f"--tasks: {self.tasks} must be at least 1")
        for flag, value in (("--gpus-per-task", self.gpus_per_task), ("--cpus-per-task", self.cpus_per_task)):
            if value is not None and value < 0:
                raise ConfigError(f"{flag}: {value} must not be negative")
        if self.partition is not None and not PARTITION.fullmatch(self.partition):
            raise ConfigError(f"--partition: {quote(self.partition)} is not a SLURM partition name (letters, digits, "
                              f"_ . - and commas between names)")
        if self.time is not None and not TIME.fullmatch(self.time):
            raise ConfigError(f"--time: {quote(self.time)} is not a SLURM time (MINUTES, HH:MM:SS or D-HH:MM:SS)")
        for line in self.sbatch:
            if not line.startswith("-") or not line.isprintable():
                raise ConfigError(f"--sbatch: {quote(line)} is not an sbatch option (one line of printable "
                                  f"characters); give it as --sbatch=--qos=high")


def check_storage(storage: str | None) -> str:
    """The study's storage for tasks on many nodes: a database every node reaches."""
    if not storage or "://" not in storage:
        raise ConfigError(
            "--launcher slurm: give --storage with a database every node reaches, e.g. "
            "--storage postgresql://user@dbhost/lab (a journal file is one machine's)"
        )
    if storage.startswith("sqlite"):
        raise ConfigError("--storage: SQLite is not a multi-process storage; use PostgreSQL (or MySQL) for --launcher slurm")
    return storage


def job_id() -> str | None:
    """This process's SLURM job as squeue names it (``JOB_TASK`` for an array task), or None outside SLURM."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def batch_script(name: str, task_argv: list[str], options: SlurmOptions, log_dir: Path, workdir: Path,
                 storage_file: Path | None = None) -> str:
    """The sbatch script of the study's array job: one coordinator per task, requeueable, signalled in time.

    ``options`` are checked (``SlurmOptions.check``), paths quoted for sbatch and for the shell, the command
    shell-quoted: nothing in a name, a path or an option becomes a line or a command of its own. ``storage_file``:
    the study's storage URL, read into ``LAB_STORAGE`` when the task starts (a password stays out of the script).
    """
    options.check()
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name(name)}",
        f"#SBATCH --array=0-{options.tasks - 1}",
        "#SBATCH --ntasks=1",
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",  # a requeued task appends to its log
        f"#SBATCH --output={sbatch_value(f'{log_dir}/%A_%a.out')}",
        f"#SBATCH --signal=B:USR1@{SIGNAL_S}",
    ]
    for flag, value in (("partition", options.partition), ("gpus-per-task", options.gpus_per_task),
                        ("cpus-per-task", options.cpus_per_task), ("time", options.time)):
        if value is not None:
            lines.append(f"#SBATCH --{flag}={value}")
    lines += [f"#SBATCH {line}" for line in options.sbatch]
    if storage_file is not None:
        lines.append(f"export {STORAGE_ENV}=\"$(cat -- {shlex.quote(str(storage_file))})\"")
    lines += [
        f"cd {shlex.quote(str(workdir))}",
        'echo "[lab] task ${SLURM_ARRAY_TASK_ID} of job ${SLURM_ARRAY_JOB_ID} on $(hostname), '
        'start ${SLURM_RESTART_COUNT:-0}, $(date -u +%FT%TZ)"',
        "exec " + shlex.join(task_argv),  # the coordinator is the batch shell: it gets the --signal
        "",
    ]
    return "\n".join(lines)


def submit(sweep: Any, task_argv: list[str], options: SlurmOptions, secret_storage: str | None = None) -> str:
    """Submit the array job for ``sweep`` (a ``lab.sweep.Sweep`` whose points are queued); its job id.

    ``secret_storage``: a storage URL with a password, which ``task_argv`` leaves out: written to ``slurm/storage.url``
    (mode 0600, for the submitting user alone), from which each task reads it into ``LAB_STORAGE``.
    """
    from lab.records import check_folder, write_atomic

    if shutil.which("sbatch") is None:
        raise ConfigError("--launcher slurm: no sbatch here; submit from a SLURM login node (or use --launcher local)")
    folder = sweep.study_dir / "slurm"
    check_folder(folder, "study's slurm folder")
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()
    storage_file = None
    if secret_storage is not None:
        storage_file = folder / STORAGE_FILE
        write_atomic(storage_file, secret_storage + "\n", mode=0o600)
    script = folder / f"submit-{time.strftime('%Y%m%d-%H%M%S')}.sh"
    write_atomic(script, batch_script(sweep.name, task_argv, options, folder, Path.cwd(), storage_file))
    done = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True)
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"--launcher slurm: sbatch refused the job ({first}); the script is {script}")
    job = done.stdout.strip().split(";")[0]
    jobs = sweep.study.user_attrs.get(SLURM_JOBS, [])
    sweep.study.set_user_attr(SLURM_JOBS, [*jobs, {"job": job, "tasks": options.tasks, "submitted": time.time(),
                                                   "script": str(script)}])
    return job


def requeue(job: str | None, out=None) -> None:
    """Put this task (``JOB_TASK``: not the whole array) back in SLURM's queue; it is killed and started again later."""
    out = out or sys.stdout  # at call time: the stdout of now (a test's capture, a redirect)
    if not job:
        return
    before = restarts(job)
    done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if done.returncode == 0:
        note = "requeued"
    elif "pending" in done.stderr.lower():  # preempted: SLURM requeued it already
        note = "requeued by SLURM"
    elif done.returncode == -signal.SIGTERM and before is not None and (restarts(job) or 0) > before:
        note = "requeued"  # scontrol, a process of this task, was stopped with it by the requeue it asked for
    else:
        note = f"not requeued ({done.stderr.strip() or done.returncode}); run the same lab sweep --launcher slurm again"
    print(f"[lab] SLURM job {job}: {note}", file=out, flush=True)


def restarts(job: str) -> int | None:
    """How many times SLURM has requeued ``job`` (``Restarts=``); None where scontrol does not say."""
    shown = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True)
    found = re.search(r"\bRestarts=(\d+)", shown.stdout)
    return int(found.group(1)) if found else None


def queued_jobs(jobs: list[dict]) -> list[tuple[str, str, str]] | None:
    """(job, state, reason) of the study's array tasks that SLURM still has; None without squeue here."""
    if not jobs:
        return []
    if shutil.which("squeue") is None:
        return None
    ids = ",".join(str(j["job"]) for j in jobs)
    done = subprocess.run(["squeue", "-h", "-r", "-j", ids, "-o", "%i|%T|%r"], capture_output=True, text=True)
    if done.returncode != 0:  # jobs SLURM has forgotten make squeue fail: none of them is queued
        return [] if "Invalid job id" in done.stderr else None
    return [tuple(line.split("|", 2)) for line in done.stdout.splitlines() if line.count("|") == 2]


def slurm_env_dropped() -> None:
    """Drop SLURM's variables in a trial process: Lightning then neither auto-requeues nor asks for srun."""
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        del os.environ[key]
