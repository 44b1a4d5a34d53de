"""``lab sweep NAME --status``: the study at a glance, from its storage alone, read through ``lab.sweep.protocol``."""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

from lab.config import ConfigError, make_config
from lab.sweep.dryrun import _plural
from lab.sweep.protocol import (
    CONTINUES,
    FAILURE,
    GRID,
    HEARTBEAT,
    LOST_RECORDS,
    PROGRESS,
    PRUNED_AT,
    RUN,
    SLURM_JOB,
    WARNINGS,
    WORKER,
    grid_key,
)
from lab.sweep.slurm import SLURM_JOBS
from lab.sweep.spec import SweepSpec, planned_trials
from lab.sweep.storage import make_storage, shown

def _running_state(trial: Any, now: float) -> str:
    """"running", or "stalled" when its coordinator said the trial has made no progress for half its stall timeout."""
    progress = trial.user_attrs.get(PROGRESS)
    return "stalled" if isinstance(progress, dict) and "stalled_since" in progress else "running"


def _progress_text(trial: Any, now: float) -> str:
    """", iteration N" of a running trial; of a stalled one also how long it has made no progress, and its limit."""
    progress = trial.user_attrs.get(PROGRESS)
    if not isinstance(progress, dict) or not isinstance(progress.get("iteration"), int):
        return ""
    text = f", iteration {progress['iteration']}"
    if "stalled_since" in progress:
        text += (f", no progress for {now - progress['stalled_since']:.0f}s (killed and resumed after "
                 f"{progress.get('stall_after', '?')}s)")
    return text


def print_status(name: str, spec: SweepSpec, recipe: dict[str, Any], storage: str | None = None,
                 overrides: dict[str, Any] | None = None, out=None) -> dict[str, int]:
    """``lab sweep NAME --status``: the study at a glance, from its storage alone (any machine, any launcher):
    points done / running (where) / failed (why) / waiting, and the study's SLURM jobs still queued."""
    out = out or sys.stdout  # at call time: the stdout of now (a test's capture, a redirect)
    import optuna
    from optuna.trial import TrialState

    cli = {**(overrides or {}), "track.study": name}
    study_dir = Path(make_config(recipe, spec.overrides({}, cli)).track.runs_dir) / name
    if (not storage or "://" not in storage) and not Path(storage or study_dir / "optuna.journal").is_file():
        raise ConfigError(f"no study {name!r} in {storage or study_dir / 'optuna.journal'}: start it with "
                          f"`lab sweep {shlex.quote(name)}`, or give the --storage (and --runs-dir) it was started with")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=name, storage=make_storage(storage, study_dir))
    except KeyError:
        raise ConfigError(f"no study {name!r} in {shown(storage)}: start it with `lab sweep {shlex.quote(name)} --storage ...`") from None
    lost = {int(k) for k in study.user_attrs.get(LOST_RECORDS, {})}
    trials = [t for t in study.get_trials(deepcopy=False) if not (t.number in lost and t.state == TrialState.COMPLETE)]
    continued = {t.user_attrs[CONTINUES] for t in trials if CONTINUES in t.user_attrs}
    now, rows = time.time(), []
    if spec.grid:
        names = {grid_key(p): run for p, (run, _) in zip(spec.grid_points(), planned_trials(spec, recipe, cli))}
        by_point: dict[str, list] = {key: [] for key in names}
        for t in trials:
            key = grid_key(t.user_attrs.get(GRID, {}))
            if key in by_point:
                by_point[key].append(t)
        units = [(names[key], ts) for key, ts in by_point.items()]
    else:
        units = [(t.user_attrs.get(RUN, f"trial {t.number}"), [t]) for t in trials]
    counts = {"done": 0, "pruned": 0, "running": 0, "failed": 0, "waiting": 0}
    for run, ts in units:
        states = {t.state for t in ts}
        pruned = [t for t in ts if t.state == TrialState.PRUNED and PRUNED_AT in t.user_attrs]
        if TrialState.COMPLETE not in states and pruned:
            counts["pruned"] += 1
            rows.append(f"  pruned   {pruned[0].user_attrs.get(RUN, run)}: trial {pruned[0].number} at iteration "
                        f"{pruned[0].user_attrs[PRUNED_AT]}")
        elif TrialState.COMPLETE in states:
            counts["done"] += 1
            for t in (t for t in ts if t.state == TrialState.COMPLETE and t.user_attrs.get(WARNINGS)):
                rows.append(f"  marked   {t.user_attrs.get(RUN, run)}: trial {t.number}: {'; '.join(t.user_attrs[WARNINGS])}")
        elif TrialState.RUNNING in states:
            counts["running"] += 1
            for t in (t for t in ts if t.state == TrialState.RUNNING):
                worker = str(t.user_attrs.get(WORKER, "?::")).split(":")
                job = f", SLURM job {t.user_attrs[SLURM_JOB]}" if SLURM_JOB in t.user_attrs else ""
                beat = now - t.user_attrs.get(HEARTBEAT, t.datetime_start.timestamp())
                rows.append(f"  {_running_state(t, now)}  {t.user_attrs.get(RUN, run)}: trial {t.number} on {worker[0]} "
                            f"(pid {worker[1]}{job}), heartbeat {beat:.0f}s ago{_progress_text(t, now)}")
        elif TrialState.WAITING in states or not ts:
            counts["waiting"] += 1
            after = [t for t in ts if t.state == TrialState.WAITING and CONTINUES in t.user_attrs]
            if after:
                rows.append(f"  waiting  {run}: continues trial {after[0].user_attrs[CONTINUES]} from its checkpoint")
        else:  # every trial of it ended unfinished
            last = max(ts, key=lambda t: t.number)
            if last.state == TrialState.FAIL and last.number not in continued:
                counts["failed"] += 1
                rows.append(f"  failed   {last.user_attrs.get(RUN, run)}: trial {last.number}: {last.user_attrs.get(FAILURE, '?')}")
            elif spec.grid:
                counts["waiting"] += 1  # skipped, or handed on: the next coordinator queues the point again
    if not spec.grid:
        counts["waiting"] = max(0, spec.n_trials - counts["done"] - counts["pruned"] - counts["running"])
    total = spec.total
    marked = sum(row.startswith("  marked") for row in rows)
    pruned_text = f", {counts['pruned']} pruned" if counts["pruned"] else ""
    print(f"[{name}] {_plural(total, 'point' if spec.grid else 'trial')}: {counts['done']} done"
          f"{f' ({marked} marked)' if marked else ''}{pruned_text}, {counts['running']} running, "
          f"{counts['failed']} failed, {counts['waiting']} waiting", file=out)
    for row in rows:
        print(row, file=out)
    jobs = study.user_attrs.get(SLURM_JOBS, [])
    if jobs:
        from lab.sweep.slurm import queued_jobs

        queued = queued_jobs(jobs)
        if queued is None:
            print(f"  SLURM    jobs {', '.join(str(j['job']) for j in jobs)}: no squeue here to ask", file=out)
        elif not queued:
            print(f"  SLURM    no job of the study is queued (submitted: {', '.join(str(j['job']) for j in jobs)})", file=out)
        else:
            print("  SLURM    " + ", ".join(f"{job} {state}" + (f" ({reason})" if reason not in ("None", "") else "")
                                          for job, state, reason in queued), file=out)
    return counts
