"""``lab sweep NAME``: the command, from its options to a finished study (or a dry run, a status, a SLURM
submission); the sweep itself is ``lab.sweep``'s."""
from __future__ import annotations

import argparse
import shlex
import sys
import time

from lab.cli.parser import overrides_of


def _default_workers(spec, recipe, overrides: dict) -> int:
    """Trials at once here: the sweep's smallest net packed onto every GPU, or one per core (``lab.sweep.packing``)."""
    from lab.sweep import packing
    from lab.sweep import planned_trials

    configs = [config for _, config in planned_trials(spec, recipe, overrides)]
    return packing.default_workers(configs, packing.visible_gpus())


def cmd_sweep(args: argparse.Namespace) -> int:
    from lab.config import ConfigError
    from lab.sweep import Sweep, SweepStopped, load_sweep

    name, spec, recipe = load_sweep(args.name)
    overrides = overrides_of(args.overrides)
    if args.runs_dir:
        overrides["track.runs_dir"] = args.runs_dir
    if args.wandb:
        overrides["track.wandb"] = args.wandb
    if args.print_config:
        from lab.sweep.spec import resolved_yaml

        print(resolved_yaml(name, spec, recipe, {**overrides, "track.study": name}), end="")
        return 0
    if args.dry_run:
        from lab.sweep import dry_run

        workers = args.workers if args.workers is not None else _default_workers(spec, recipe, overrides)
        dry_run(name, spec, recipe, overrides, workers=workers)
        return 0
    if args.status:
        from lab.sweep import print_status

        print_status(name, spec, recipe, args.storage, overrides)
        return 0
    slurm_given = [f"--{k.replace('_', '-')}" for k in ("tasks", "partition", "gpus_per_task", "cpus_per_task", "time", "sbatch")
                   if getattr(args, k) is not None]
    if args.launcher == "local" and slurm_given:
        raise ConfigError(f"{slurm_given[0]}: a SLURM option; add --launcher slurm to submit the sweep to SLURM")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers: {args.workers} must be at least 1")
    if args.stall_timeout is not None and not args.stall_timeout > 0:
        raise ConfigError(f"--stall-timeout: {args.stall_timeout:g} must be a positive number of seconds")
    if args.launcher == "slurm" and not args.task:
        return _submit_to_slurm(args, name, spec, recipe, overrides)
    workers = args.workers if args.workers is not None else _default_workers(spec, recipe, overrides)
    slurm_job = None
    if args.task:
        from lab.sweep.slurm import job_id

        slurm_job = job_id() or "none"
    start = time.perf_counter()
    sweep = Sweep(name, spec, recipe, storage=args.storage, workers=workers, overrides=overrides, slurm_job=slurm_job,
                  stall_timeout=args.stall_timeout)
    try:
        counts = sweep.run()
    except SweepStopped as e:  # the database or the disk failed: one line, and how to go on
        print(f"lab sweep: stopped: {e}; resume with: {_resume_command(args)}", file=sys.stderr)
        return 1
    if sweep.released == "SIGUSR1":  # preempted, or near the time limit: trials handed on; back into the queue
        from lab.sweep.slurm import requeue

        requeue(slurm_job)
        return 0
    if sweep.released:  # SIGTERM alone: cancelled (scancel); its trials were handed on to the other tasks
        print(f"[{name}] SLURM job {slurm_job} stopped by {sweep.released}; its trials were handed on")
        return 0
    nothing_left = not sweep.started and counts["running"] == counts["remaining"] == 0
    took = "already finished" if nothing_left else f"finished in {time.perf_counter() - start:.0f}s"
    if counts["running"]:  # held by another coordinator (or one that died: reaped once its heartbeat is stale)
        took = f"nothing more to run here after {time.perf_counter() - start:.0f}s"
    status = shlex.join(["lab", "sweep", name, "--status", *(["--runs-dir", args.runs_dir] if args.runs_dir else [])])
    print(
        f"[{name}] {took}: {counts['done']}/{spec.total} done, "
        + (f"{counts['pruned']} pruned, " if counts["pruned"] else "")
        + f"{counts['failed']} failed"
        + (f", {counts['running']} running in another coordinator ({status} shows where; the same command takes it "
           f"over if that one has died)" if counts["running"] else "")
        + f"; records in {sweep.study_dir}; next: "
        + shlex.join(["lab", "analyze", name, *(["--runs-dir", args.runs_dir] if args.runs_dir else [])])
    )
    if any(sweep.study_dir.glob("*/wandb/offline-run-*")):
        print(f"[{name}] W&B runs were written offline; upload them with: wandb sync "
              f"{shlex.quote(str(sweep.study_dir))}/*/wandb/offline-run-*")
    if counts["failed"]:
        print(f"[{name}] run the same command again to retry the failed trials", file=sys.stderr)
        return 1
    return 0


def _submit_to_slurm(args: argparse.Namespace, name: str, spec, recipe: dict, overrides: dict) -> int:
    """``--launcher slurm``: queue the study's points here (errors come now, not in a job), then submit the tasks."""
    from lab.sweep.slurm import SlurmOptions, check_storage, submit
    from lab.sweep.storage import PASSWORD_HINT, has_password, shown
    from lab.sweep import Sweep

    storage = check_storage(args.storage)
    options = SlurmOptions(tasks=1 if args.tasks is None else args.tasks, partition=args.partition, gpus_per_task=args.gpus_per_task,
                           cpus_per_task=args.cpus_per_task, time=args.time, sbatch=args.sbatch or [])
    options.check()
    sweep = Sweep(name, spec, recipe, storage=storage, workers=1, overrides=overrides)
    added = sweep.queue()
    runs_dir = sweep.study_dir.parent.resolve()
    secret = has_password(storage)  # then the URL reaches the tasks in a file only they read (lab.sweep.slurm.submit)
    task = [sys.executable, "-m", "lab", "sweep", args.name, *([] if secret else ["--storage", storage]),
            "--runs-dir", str(runs_dir), "--task"]
    task += ["--workers", str(args.workers)] if args.workers is not None else []
    task += ["--wandb", args.wandb] if args.wandb else []
    task += ["--stall-timeout", str(args.stall_timeout)] if args.stall_timeout is not None else []
    task += [item for item in args.overrides if not item.startswith("track.runs_dir=")]
    job = submit(sweep, task, options, storage if secret else None)
    counts = sweep.counts()
    print(f"[{name}] submitted SLURM job {job}: {options.tasks} task{'s' if options.tasks != 1 else ''} for "
          f"{counts['remaining'] + counts['running']} of {spec.total} points ({added} newly queued); records in {sweep.study_dir}; "
          f"logs in {sweep.study_dir / 'slurm'}; follow it with: "
          + shlex.join(["lab", "sweep", args.name, "--status", "--storage", shown(storage),
                        *(["--runs-dir", args.runs_dir] if args.runs_dir else [])])
          + (f" ({PASSWORD_HINT})" if secret else ""))
    return 0


def _resume_command(args: argparse.Namespace) -> str:
    """The ``lab sweep`` command line that carries on where this one stopped (a storage's password as ``***``)."""
    from lab.sweep.storage import PASSWORD_HINT, has_password, shown

    words = ["lab", "sweep", args.name]
    for option in ("storage", "runs_dir", "wandb", "workers"):
        if getattr(args, option) is not None:
            words += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    words = [shown(w) for w in words]
    return shlex.join(words + args.overrides) + (f" ({PASSWORD_HINT})" if has_password(args.storage) else "")
