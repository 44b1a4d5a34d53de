"""A coordinator (``Sweep``: one per ``lab sweep`` command, one per SLURM task): claims the study's trials, runs each in
a trial process (``lab.sweep.trial``), reports its metric to Optuna, watches its heartbeat and progress, and finishes
it; the states it moves trials through are ``lab.sweep.protocol``'s."""
from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.config import DATASETS, PRECISIONS, SCHEDULES, Config, ConfigError, canonical, make_config, quote
from lab.nets import ARCHS, SHORTCUTS, STYLES
from lab.progress import QUIET_ENV, StudyProgress
from lab.records import append_line, check_folder, is_number, note, set_aside
from lab.sweep import packing
from lab.sweep.dryrun import training_cost
from lab.sweep.protocol import (
    BASE_CONFIG,
    CLAIM_LOST_S,
    CONTINUES,
    EXIT_DISK_FULL,
    FAILURE,
    GRID,
    HEARTBEAT,
    HEARTBEAT_S,
    LINGER_POLL_S,
    LOST_RECORDS,
    MAX_STALLS,
    N_PARAMS,
    PROGRESS,
    PRUNED_AT,
    RECORD,
    RUN,
    SETTINGS,
    SKIPPED,
    SLURM_JOB,
    STALE_AFTER_S,
    STALLED,
    WANDB_GROUP,
    WARNINGS,
    WORKER,
    _grid_key,
    _param_value,
    _pid_alive,
)
from lab.sweep.spec import METRICS, SweepSpec, _plain_name, planned_trials
from lab.sweep.storage import StorageUnavailable, disk_full, make_storage
from lab.sweep.trial import _chain, _trial_main
from lab.sweep.watch import Reporter, StallWatch

def _suggest(trial: Any, key: str, dist: dict[str, Any]) -> Any:
    if "choices" in dist:
        return trial.suggest_categorical(key, dist["choices"])
    low, high = dist["low"], dist["high"]
    if isinstance(low, int) and isinstance(high, int) and not dist.get("log"):
        return trial.suggest_int(key, low, high, step=dist.get("step", 1))
    return trial.suggest_float(key, float(low), float(high), log=bool(dist.get("log")), step=dist.get("step"))


# Every value a grid's field can take, where the config knows them: the categorical choices of its parameter.
GRID_CHOICES = {"model.arch": ARCHS, "model.shortcut": SHORTCUTS, "model.style": STYLES, "data.name": DATASETS,
                "optim.schedule": SCHEDULES, "train.precision": PRECISIONS}
_LEFT_OUT = object()  # a grid value that the study's distribution for its parameter cannot hold


def _suggest_value(trial: Any, key: str, choices: list[Any], value: Any, known: Any) -> Any:
    """``value`` (fixed for ``trial``) as its parameter ``key``, with a distribution compatible with ``known`` (the
    study's for ``key``, if any); ``_LEFT_OUT`` when none can hold it."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if all(is_number(c) for c in choices):
        kind = IntDistribution if all(isinstance(c, int) for c in choices) else FloatDistribution
        low, high = min(choices), max(choices)
        if isinstance(known, (IntDistribution, FloatDistribution)):
            if type(known) is not kind and not (kind is IntDistribution and isinstance(known, FloatDistribution)):
                return _LEFT_OUT
            if known.log or (isinstance(known, FloatDistribution) and known.step is not None):
                return _LEFT_OUT  # lab makes neither; a range of its own would not hold the point
            kind, low, high = type(known), min(low, known.low), max(high, known.high)
        elif known is not None:
            return _LEFT_OUT
        if kind is IntDistribution:
            return trial.suggest_int(key, int(low), int(high))
        return trial.suggest_float(key, float(low), float(high))
    options = list(GRID_CHOICES.get(key, ())) or ([False, True] if all(isinstance(c, bool) for c in choices) else choices)
    if isinstance(known, CategoricalDistribution):
        options = list(known.choices)
    elif known is not None:
        return _LEFT_OUT
    if value not in options:
        return _LEFT_OUT
    return trial.suggest_categorical(key, options)


def _record_problem(run_dir: Path) -> str | None:
    """What is wrong with a finished run's record, if anything: a missing folder or an unreadable summary."""
    from lab.records import RunRecord

    return RunRecord(run_dir).summary_problem()


@dataclass
class Claim:
    trial: Any
    config: Any
    run_name: str
    pruned: tuple[int, float] | None = None  # (iteration, value) at which the pruner stopped it
    pruned_s: float = 0.0  # when (time.time()): a trial process that outlives SIGTERM long is killed
    stalled: float | None = None  # seconds without progress after which its process was killed (StallWatch)


PRUNED_KILL_AFTER_S = 30  # a pruned trial's process has this long to end after SIGTERM


class SweepStopped(RuntimeError):
    """The sweep could not go on (its storage or disk failed); finished results are kept."""


class Sweep:
    """Runs a study's trials with ``workers`` parallel trial processes on this machine."""

    def __init__(
        self,
        name: str,
        spec: SweepSpec,
        recipe: dict[str, Any],
        storage: str | None = None,
        workers: int = 1,
        overrides: dict[str, Any] | None = None,
        out=None,
        slurm_job: str | None = None,
        stall_timeout: float | None = None,
    ) -> None:
        import optuna

        self.name, self.spec, self.recipe, self.workers, self.out = name, spec, recipe, workers, out or sys.stdout
        self.slurm_job = slurm_job  # JOB_TASK of the SLURM array task this coordinator runs in, if any
        self.stall_timeout = stall_timeout  # seconds without progress that kill a trial (None: StallWatch's default)
        self.linger = slurm_job is not None  # a SLURM task stays while others run, to take over lost trials
        self.released: str | None = None  # the signal that released this coordinator's trials
        self.cli = {**(overrides or {}), "track.study": name}  # the command line's overrides, for every trial
        track = make_config(recipe, spec.overrides({}, self.cli)).track
        self.study_dir = Path(track.runs_dir) / name
        self.log_dir = self.study_dir / "logs"  # made when trials start: a command refused here leaves nothing
        for folder, what in ((self.study_dir, "study folder"), (self.log_dir, "study's logs folder")):
            check_folder(folder, what, track.follow_symlinks)  # no write follows a link out of the runs folder
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        opened = make_storage(storage, self.study_dir, track.follow_symlinks)
        try:
            self.study = optuna.create_study(
                study_name=name,
                storage=opened,
                sampler=optuna.samplers.TPESampler(seed=spec.sampler_seed),
                pruner=spec.make_pruner(),
                direction=spec.direction,
                load_if_exists=True,
            )
        except ValueError as e:  # e.g. the stored study was made with another direction
            raise ConfigError(f"study {name!r}: {e}") from None
        if self.study.metric_names != [spec.metric]:  # what optuna-dashboard and Optuna's plots call the objective
            import warnings

            with warnings.catch_warnings():  # "experimental" since Optuna 3.2: about Optuna, nothing a user can do
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.set_metric_names([spec.metric])
        if WANDB_GROUP not in self.study.user_attrs:  # two studies of one name (two runs folders) are two groups
            # a study that ran before groups had ids keeps its name as its group: its runs stay together in W&B
            older = bool(self.study.get_trials(deepcopy=False))
            self.study.set_user_attr(WANDB_GROUP, name if older else f"{name}-{uuid.uuid4().hex[:6]}")
        self.wandb_group = self.study.user_attrs[WANDB_GROUP]
        self.storage_kind = "database" if storage and "://" in storage else "journal file"
        self.lost: set[int] = set()  # trial numbers of complete trials whose record is gone (_check_records)
        self._check_same_base()
        # host:pid:token; the token tells this coordinator from an earlier one that had the same pid
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lock = threading.RLock()
        self.processes: dict[int, tuple[Any, Any]] = {}  # trial number -> (process, trial)
        self.claims: dict[int, Claim] = {}  # trial number -> claim, from _claim until _finish or release
        self.failed = 0
        self.started = 0  # trials this coordinator started: none, and a rerun of a finished study trained nothing
        self.display: StudyProgress | None = None  # the live progress while run() runs (lab.progress)
        self.net_sizes: dict[tuple, tuple[int, int]] = {}
        planned = planned_trials(spec, recipe, self.cli)
        self.point_costs = {_grid_key(p): training_cost(c, self.net_sizes) for p, (_, c) in zip(spec.grid_points(), planned)}
        self.search_cost = training_cost(planned[0][1], self.net_sizes)
        self.errors: list[Exception] = []
        self.stopping = False
        self.pruning = spec.pruner_name != "none"
        self.gpus = packing.GpuSlots(packing.visible_gpus())  # several trials per GPU, spread across GPUs
        self.threads_per_trial = packing.threads_per_trial(workers)
        self.mp = multiprocessing.get_context("forkserver")
        # torch, Lightning, W&B and scikit-learn imported once (about 13 s on 2 cores), not per trial
        self.mp.set_forkserver_preload(["lab.sweep.trial", "lab.train", "wandb", "sklearn.datasets"])

    def _check_same_base(self) -> None:
        """Refuse to mix configs in one study: what does not vary must match what the study started with."""
        from optuna.trial import TrialState

        # without track (where records go and how W&B mirrors them may differ between machines), milestones as
        # iterations (a study started with [120] goes on with [0.75] of 160)
        base = canonical(make_config(self.recipe, self.spec.overrides({}, self.cli)))
        for key in (*self.spec.grid, *self.spec.search):
            section, _, name = key.partition(".")
            base[section].pop(name, None)
        self._check_same_settings()
        stored = self.study.user_attrs.get(BASE_CONFIG)
        if stored is None or not (self._trials(TrialState.RUNNING) + self._ended()):
            # nothing ran to the end with the stored settings (say, every run diverged): the fixed ones count
            self.study.set_user_attr(BASE_CONFIG, base)
            return
        # A field that a newer lab added is absent from older studies: it counts as its default there.
        defaults = Config().to_dict()

        def value(config: dict, section: str, key: str) -> Any:
            return config.get(section, {}).get(key, defaults.get(section, {}).get(key))

        changed = sorted(
            f"{section}.{k}" for section in {*base, *stored} for k in {*base.get(section, {}), *stored.get(section, {})}
            if value(stored, section, k) != value(base, section, k)
        )
        if changed:
            raise ConfigError(
                f"study {self.name!r} was started with other settings ({', '.join(changed)} differ); "
                f"put them back, or give the changed sweep a new name so the studies stay apart"
            )

    def _check_same_settings(self) -> None:
        """Refuse ``when`` rules changed for points the study already has; rules for new points are fine."""
        in_grid = {_grid_key(p) for p in self.spec.grid_points()}
        for t in self.study.get_trials(deepcopy=False):
            point = t.user_attrs.get(GRID)
            taken = t.state.name in ("COMPLETE", "RUNNING", "WAITING") or (t.state.name == "PRUNED" and PRUNED_AT in t.user_attrs)
            if point is None or _grid_key(point) not in in_grid or not taken:
                continue
            before, now = t.user_attrs.get(SETTINGS, {}), self.spec.settings(point)
            if before != now:
                raise ConfigError(
                    f"study {self.name!r} ran {point} with other per-point settings ({quote(before)}, now "
                    f"{quote(now)}); put the when rules back, or give the changed sweep a new name so the studies stay apart"
                )

    def _enqueue(self, point: dict[str, Any], params: dict[str, Any] | None = None, **attrs: Any) -> None:
        """Queue ``point`` as a waiting trial whose parameters are the point's values (and ``params``)."""
        fixed = {k: _param_value(v) for k, v in point.items() if k not in self.spec.search}
        self.study.enqueue_trial({**fixed, **(params or {})}, user_attrs={GRID: point, SETTINGS: self.spec.settings(point), **attrs})

    # --- the study's state -------------------------------------------------------------

    def _trials(self, *states: Any) -> list[Any]:
        """The study's trials in ``states``; complete ones whose run record was lost do not count."""
        return [t for t in self.study.get_trials(deepcopy=False, states=states or None) if t.number not in self.lost]

    def _pruned(self) -> list[Any]:
        """Trials whose run the spec's pruner stopped: their points are taken, as complete ones' are."""
        from optuna.trial import TrialState

        return [t for t in self._trials(TrialState.PRUNED) if PRUNED_AT in t.user_attrs]

    def _ended(self) -> list[Any]:
        """Trials whose point is taken for good: complete, or pruned by the spec's pruner."""
        from optuna.trial import TrialState

        return self._trials(TrialState.COMPLETE) + self._pruned()

    def _check_records(self) -> None:
        """Find complete trials whose run record is gone or damaged, so that their points run again.

        Optuna cannot reopen a finished trial, so the study remembers them in its ``lost_records``
        attribute (other coordinators read it too). Records are checked where this machine can see
        them: trials run here, and any whose folder is here (a shared filesystem).
        """
        from optuna.trial import TrialState

        lost = {int(k): v for k, v in self.study.user_attrs.get(LOST_RECORDS, {}).items()}
        found = {}
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.number in lost or RUN not in t.user_attrs:
                continue
            record = Path(t.user_attrs.get(RECORD, self.study_dir / t.user_attrs[RUN]))
            here = str(t.user_attrs.get(WORKER, "")).split(":")[0] == socket.gethostname() or record.is_dir()
            problem = _record_problem(record) if here else None
            if problem:
                found[t.number] = problem
                self.progress(f"trial {t.number} finished, but {problem}: its point runs again")
        if found:
            lost.update(found)
            self.study.set_user_attr(LOST_RECORDS, {str(k): v for k, v in lost.items()})
        self.lost = set(lost)

    def _reap_stale(self) -> list[Any]:
        """Fail running trials whose worker is gone; return them (``_requeue`` continues their runs)."""
        from optuna.trial import TrialState

        host, now, reaped = socket.gethostname(), time.time(), []
        for t in self._trials(TrialState.RUNNING):
            worker = t.user_attrs.get(WORKER)
            if worker == self.worker_id:
                continue
            heartbeat = t.user_attrs.get(HEARTBEAT, t.datetime_start.timestamp())
            w_host, w_pid, _ = (worker or "::").split(":")
            if worker is None:  # popped by ask() but never claimed: its coordinator died in between
                lost = now - heartbeat > CLAIM_LOST_S
            else:
                lost = w_host == host and (int(w_pid) == os.getpid() or not _pid_alive(int(w_pid)))
            if lost or now - heartbeat > STALE_AFTER_S:
                try:
                    # Optuna has no public call that sets an attribute of a trial another process asked
                    # for; the storage's is the one call of the coordinator by trial id.
                    self.study._storage.set_trial_user_attr(t._trial_id, FAILURE, f"worker {worker} lost")
                    self.study.tell(t.number, state=TrialState.FAIL)
                except Exception:  # another coordinator failed it first
                    continue
                reaped.append(t)
        return reaped

    def _requeue(self, trial: Any, why: str, more: dict[str, Any] | None = None) -> None:
        """Queue the point of a trial that stopped unfinished again, with its parameters and run name (and ``more``
        user attributes): the trial that takes it resumes the run from its last checkpoint (also a ``-t#`` run, and
        a searched one)."""
        attrs = {**{k: trial.user_attrs[k] for k in (RUN,) if k in trial.user_attrs}, **(more or {})}
        params = {k: v for k, v in trial.params.items() if k in self.spec.search}
        if self.spec.grid:
            self._enqueue(trial.user_attrs.get(GRID, {}), params, **attrs, **{CONTINUES: trial.number})
        else:
            self.study.enqueue_trial(params, user_attrs={**attrs, CONTINUES: trial.number})
        self.progress(f"trial {trial.number} {why}: its run continues in a new trial")

    def _enqueue_missing(self) -> int:
        from optuna.trial import TrialState

        active = {
            _grid_key(t.user_attrs[GRID])
            for t in self._trials(TrialState.RUNNING, TrialState.WAITING) + self._ended()
            if GRID in t.user_attrs
        }
        missing = [p for p in self.spec.grid_points() if _grid_key(p) not in active]
        # Deepest first: a trial's cost grows with depth, and parallel workers finish together
        # when the short trials come last (longest-processing-time-first scheduling).
        missing.sort(key=lambda p: -p.get("model.depth", 0))
        for point in missing:
            self._enqueue(point)
        return len(missing)

    def counts(self) -> dict[str, int]:
        from optuna.trial import TrialState

        done = len(self._done_keys()) if self.spec.grid else len(self._trials(TrialState.COMPLETE))
        pruned = len({_grid_key(t.user_attrs.get(GRID, {})) for t in self._pruned()} - self._done_keys()) if self.spec.grid \
            else len(self._pruned())
        running = len(self._trials(TrialState.RUNNING))
        remaining = max(0, self.spec.total - done - pruned - running - self.failed)
        return {"done": done, "pruned": pruned, "running": running, "failed": self.failed, "remaining": remaining}

    def _done_keys(self) -> set[str]:
        from optuna.trial import TrialState

        return {_grid_key(t.user_attrs[GRID]) for t in self._trials(TrialState.COMPLETE) if GRID in t.user_attrs}

    def _holder_of(self, trial: Any, point: dict[str, Any]) -> int | None:
        """Another trial that owns this grid point: a complete one, or an unfinished one with a lower number.

        Trial numbers are fixed when points are enqueued, before any race, so every worker agrees on
        the owner: of two unfinished trials of one point, the higher always steps aside.
        """
        from optuna.trial import TrialState

        key = _grid_key(point)
        for t in self._trials(TrialState.RUNNING, TrialState.WAITING) + self._ended():
            if t.number != trial.number and _grid_key(t.user_attrs.get(GRID, {})) == key:
                if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or t.number < trial.number:
                    return t.number
        return None

    # --- claiming, running and finishing one trial -----------------------------------

    def _budget_left(self) -> bool:
        from optuna.trial import TrialState

        if self.stopping:
            return False
        if self.spec.grid:
            return bool(self._trials(TrialState.WAITING))
        taken = len(self._trials(TrialState.RUNNING) + self._ended())
        return taken < self.spec.n_trials and self.failed < self.spec.n_trials

    def _claim(self) -> Claim | None:
        from optuna.trial import TrialState

        from lab.records import run_dir_for

        with self.lock:
            self.lost = {int(k) for k in self.study.user_attrs.get(LOST_RECORDS, {})}  # other machines' finds too
            for lost in self._reap_stale():
                self._requeue(lost, "lost its worker")
            while self._budget_left():
                trial = self.study.ask()
                point = trial.user_attrs.get(GRID, {})
                if self.spec.grid and (point not in self.spec.grid_points() or self._holder_of(trial, point) is not None):
                    trial.set_user_attr(SKIPPED, "grid point held by another trial or not in the grid")
                    self.study.tell(trial, state=TrialState.PRUNED)
                    continue
                if not self._suggest_grid(trial, point):  # queued by an older lab, without its parameters
                    trial.set_user_attr(SKIPPED, "queued without its grid parameters; queued again with them")
                    self.study.tell(trial, state=TrialState.PRUNED)
                    self._enqueue(point, **{k: trial.user_attrs[k] for k in (RUN, CONTINUES) if k in trial.user_attrs})
                    continue
                trial.set_user_attr(WORKER, self.worker_id)
                trial.set_user_attr(HEARTBEAT, time.time())
                if self.slurm_job:
                    trial.set_user_attr(SLURM_JOB, self.slurm_job)
                params = {k: _suggest(trial, k, d) for k, d in self.spec.search.items()}
                try:
                    config = make_config(self.recipe, self.spec.overrides(point, self.cli, params))
                except ConfigError as e:  # a sampled value the recipe rejects: this trial fails, the sweep goes on
                    self.failed += 1
                    trial.set_user_attr(FAILURE, str(e))
                    self.study.tell(trial, state=TrialState.FAIL)
                    self.progress(f"trial {trial.number} FAILED: {e}")
                    continue
                # a continued trial keeps its run (and so its checkpoint), also a -t# run named after the first trial
                run_name = trial.user_attrs.get(RUN) or (
                    config.run_name if _plain_name(self.spec) else f"{config.run_name}-t{trial.number}")
                trial.set_user_attr(RUN, run_name)
                trial.set_user_attr(RECORD, str(run_dir_for(config, run_name).resolve()))
                claim = Claim(trial, config, run_name)
                self.claims[trial.number] = claim
                return claim
        return None

    def _suggest_grid(self, trial: Any, point: dict[str, Any]) -> bool:
        """The point's values as the trial's parameters (Optuna's dataframe, plots, importances and optuna-dashboard
        then see what a study varies); they were fixed when the point was enqueued, so ``suggest_*`` returns them.
        False when one comes back otherwise: a trial queued by an older ``lab`` with no parameters, whose values
        the sampler would pick.

        A study's parameter keeps one distribution (Optuna refuses a categorical one whose choices change), yet a
        grid grows (another seed, another depth): numbers are an int or float range, which may widen; names are a
        categorical over every value the field takes (``GRID_CHOICES``), or else the grid's; a value a study's
        distribution cannot hold (a study started before this, or a new free-form name) is left out of the
        trial's parameters (its ``grid`` attribute has it all)."""
        known: dict[str, Any] = {}
        for t in self.study.get_trials(deepcopy=False):
            for key, dist in t.distributions.items():
                known.setdefault(key, dist)
        for key, values in self.spec.grid.items():
            if key in self.spec.search:  # the searched value is the parameter
                continue
            value = _param_value(point[key])
            got = _suggest_value(trial, key, [_param_value(v) for v in values], value, known.get(key))
            if got is not _LEFT_OUT and got != value:
                return False
        return True

    def _run(self, claim: Claim) -> dict[str, Any] | None:
        """Train in a child process; heartbeat meanwhile; the summary, or None if the run failed."""
        from lab.records import finished_summary, run_dir_for

        log = self.log_dir / f"{claim.run_name}.log"
        if log.is_symlink():  # planted: the trial and the lines below would write where it points
            note(f"{log}: a symbolic link (to {os.readlink(log)}), which lab never writes; set aside as "
                 f"{set_aside(log).name}")
        gpu = self.gpus.take(claim.config, lambda: self.stopping)  # waits for room on a GPU; None: no GPU
        display = self.display  # run() drops it when it returns, maybe while this thread still runs (a release)
        reports = (display.queue, claim.trial.number) if display is not None else None
        pulse = self.mp.RawArray("d", 2)  # (iteration, time) of the trial's last batch: lab.progress.Pulse
        args = (claim.config.to_dict(), claim.run_name, str(log), self.threads_per_trial, os.getpid(), gpu, self.wandb_group,
                reports, pulse)
        proc = self.mp.Process(target=_trial_main, args=args, name=claim.run_name)
        try:
            with self.lock:
                if self.stopping:  # released or stopped since the claim: release/_stop_trials handle the trial
                    return None
                proc.start()
                self.processes[claim.trial.number] = (proc, claim.trial)
                if display is not None:
                    display.started(claim.trial.number, claim.run_name, training_cost(claim.config, self.net_sizes),
                                    claim.config.optim.batch_size, claim.config.optim.max_steps)
                    display.waiting = self._waiting_cost()
            last_beat, said_stalled = time.time(), False
            reporter = Reporter(claim.trial, run_dir_for(claim.config, claim.run_name), self.spec.metric, claim.config)
            watch = StallWatch(pulse, self.stall_timeout, time.time())
            while proc.is_alive():
                proc.join(timeout=1)
                with self.lock:
                    # reported while not pruned (Optuna holds the values up to the pruner's decision) and still open
                    # (not released or stopped meanwhile)
                    reporting = claim.pruned is None and claim.trial.number in self.claims
                    if reporting and reporter.poll() and self.pruning and claim.trial.should_prune():
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
            with self.lock:  # pruned: Optuna holds the values up to the pruner's decision, as its users expect
                if claim.pruned is None and claim.trial.number in self.claims:
                    reporter.poll()  # the last evaluations, written just before the process ended
        finally:
            self.gpus.give_back(gpu, claim.config)
            if display is not None:
                display.ended(claim.trial.number)
        self.processes.pop(claim.trial.number, None)
        # The summary, written last and atomically, is what makes a run finished: a process that
        # dies while shutting down after writing it (W&B's service, say) has still finished its run.
        summary = finished_summary(run_dir_for(claim.config, claim.run_name), claim.config)
        if claim.pruned is not None and summary is None:
            step, value = claim.pruned
            append_line(log, f"\n[lab sweep] pruned at iteration {step} ({self.spec.metric} {value:.2f}) by the "
                             f"{self.spec.pruner_name} pruner\n")
        elif claim.stalled is not None and summary is None:
            append_line(log, f"\n[lab sweep] no progress for {claim.stalled:.0f}s (its stall timeout): the trial "
                             f"process was killed; its run resumes from its checkpoint in a new trial\n")
        elif proc.exitcode != 0:
            from lab.train import EXIT_INTERRUPTED

            ended = ("was interrupted (SIGINT)" if proc.exitcode == EXIT_INTERRUPTED else
                     f"was ended by {signal.Signals(-proc.exitcode).name}" if proc.exitcode < 0 and
                     -proc.exitcode in signal.valid_signals() else f"ended with exit code {proc.exitcode}")
            try:
                append_line(log, f"\n[lab sweep] trial process {ended}{' after writing its summary' if summary else ''}\n")
            except OSError as e:  # a full disk: the sweep stops below, saying so once
                if not disk_full(e):
                    raise
        if summary is None and proc.exitcode in (EXIT_DISK_FULL, -signal.SIGXFSZ):
            strerror = "a file-size limit" if proc.exitcode == -signal.SIGXFSZ else os.strerror(errno.ENOSPC)
            raise OSError(errno.ENOSPC, strerror, str(run_dir_for(claim.config, claim.run_name)))
        return summary

    def _finish(self, claim: Claim, summary: dict[str, Any] | None) -> None:
        from optuna.trial import TrialState

        from lab.records import RunRecord, read_failure, run_dir_for

        with self.lock:
            trial = claim.trial
            if self.claims.pop(trial.number, None) is None:  # released meanwhile (a SLURM signal)
                return
            if summary is None and claim.pruned is not None:
                step, value = claim.pruned
                RunRecord(run_dir_for(claim.config, claim.run_name)).write_pruned(
                    claim.run_name, step, self.spec.metric, value, self.spec.pruner_name, claim.config)
                trial.set_user_attr(PRUNED_AT, step)
                self.study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
                note = f"{claim.run_name} pruned at iteration {step}: {self.spec.metric} {value:.2f} ({self.spec.pruner_name} pruner)"
            elif summary is None and claim.stalled is not None:
                stalls = trial.user_attrs.get(STALLED, 0) + 1
                reason = f"stalled: no progress for {claim.stalled:.0f}s, killed"
                trial.set_user_attr(FAILURE, reason)
                self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                if stalls < MAX_STALLS:
                    self._requeue(trial, reason, {STALLED: stalls})
                    return
                self.failed += 1
                note = (f"{claim.run_name} FAILED: {reason} ({stalls} trials in a row); its log: "
                        f"{self.log_dir / f'{claim.run_name}.log'}")
            elif summary is None:
                self.failed += 1
                log = self.log_dir / f"{claim.run_name}.log"
                reason = read_failure(run_dir_for(claim.config, claim.run_name))  # e.g. "diverged at iteration 37"
                trial.set_user_attr(FAILURE, reason or f"see {log}")
                self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                note = f"{claim.run_name} FAILED{': ' + reason if reason else ''}; its log: {log}"
            else:
                for key in (*METRICS, "wall_s", "steps"):
                    if key in summary:
                        trial.set_user_attr(key, summary[key])
                trial.set_user_attr(N_PARAMS, summary["params"])
                warnings = summary.get(WARNINGS) or []
                if warnings:
                    trial.set_user_attr(WARNINGS, warnings)
                self.study.tell(trial, summary[self.spec.metric], skip_if_finished=True)
                note = (
                    f"{claim.run_name} done in {summary['wall_s']:.0f}s: "
                    f"{self.spec.metric} {summary[self.spec.metric]:.2f}, train_err {summary['train_err']:.2f}"
                    + "".join(f"; WARNING: {w}" for w in warnings)
                )
            self.progress(note)

    def _waiting_cost(self) -> float:
        """Multiply-adds of the trials not started yet (``lab.progress``'s study ETA)."""
        from optuna.trial import TrialState

        c = self.counts()
        if not self.spec.grid:
            return c["remaining"] * self.search_cost
        with self.lock:
            taken = self._done_keys() | {_grid_key(t.user_attrs.get(GRID, {})) for t in
                                         self._trials(TrialState.RUNNING) + self._pruned()}
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
        try:
            while True:
                claim = self._claim()
                if claim is None:
                    if self.linger and not self.stopping and self._others_running():
                        time.sleep(LINGER_POLL_S)  # stay to take over trials of tasks that die
                        continue
                    return
                self.started += 1
                self.progress(f"{claim.run_name} started")
                summary = self._run(claim)
                if summary is None and self.slurm_job and not self.stopping:
                    # SLURM signals every process of a preempted job at once: a trial that died of it (or of
                    # its W&B service dying) is not a failed run; the coordinator's signal releases it
                    time.sleep(3)
                if self.stopping:
                    return
                self._finish(claim, summary)
        except Exception as e:  # the storage became unreachable, the disk is full: stop all, say so in run()
            self.errors.append(e)
            self.stopping = True
            self._stop_trials("sweep stopped")

    def queue(self) -> int:
        """Bring the study up to date before trials run: points of lost records and lost workers, and
        grid points not yet in the study, queued; returns how many points were added."""
        with self.lock:
            self._check_records()
            for lost in self._reap_stale():
                self._requeue(lost, "lost its worker")
            return self._enqueue_missing() if self.spec.grid else 0

    def _others_running(self) -> bool:
        """Whether trials of other coordinators are running (one may yet be lost and need taking over)."""
        from optuna.trial import TrialState

        with self.lock:
            return any(t.user_attrs.get(WORKER) != self.worker_id for t in self._trials(TrialState.RUNNING))

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
            return self._raise_stopped()
        self.progress(f"storage: {self.storage_kind}, {added} points queued, {self.workers} workers")
        if os.environ.get(QUIET_ENV) != "1":  # where the trials are and when the study ends (lab.progress)
            self.display = StudyProgress(self.name, self.workers, self.out)
            self.display.start(self.mp)
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
            self.stopping = True
            self._stop_trials("interrupted")
            raise
        finally:
            if self.display is not None:
                self.display.close()
                self.display = None
        if self.errors:
            self._raise_stopped()
        return self.counts()

    def _raise_stopped(self) -> None:
        """The first error that stopped the workers, as one line when it is the storage's or the disk's."""
        error = self.errors[0]
        safe = f"finished results are safe in {self.study_dir}"
        if isinstance(error, StorageUnavailable):
            raise SweepStopped(f"{error}; {safe}") from error
        if any(disk_full(e) for e in _chain(error)):
            error = next(e for e in _chain(error) if disk_full(e))
            where = f" writing {error.filename}" if error.filename else ""
            raise SweepStopped(f"the disk is full{where} ({error.strerror}); {safe}; free some space") from error
        raise error

    def release(self, why: str) -> None:
        """Stop this coordinator's trials and hand their runs on: each trial fails (``FAILURE`` says why)
        and its point is queued again with its parameters and run name, so that whichever task claims it
        next (this one requeued, or another) resumes the run from its last checkpoint."""
        from optuna.trial import TrialState

        self.stopping = True
        with self.lock:
            for number, (proc, _) in list(self.processes.items()):
                proc.terminate()  # the trial saves last.ckpt (_checkpoint_on_signal), atomically, and exits
            for proc, _ in list(self.processes.values()):
                proc.join(timeout=20)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
            for number, claim in list(self.claims.items()):
                claim.trial.set_user_attr(FAILURE, f"released: {why}")
                frozen = self.study.tell(claim.trial, state=TrialState.FAIL, skip_if_finished=True)
                self.claims.pop(number, None)
                if frozen.state == TrialState.FAIL:
                    self._requeue(claim.trial, f"released ({why})")

    def _stop_trials(self, reason: str) -> None:
        """Terminate running trial processes and fail their trials where the storage still answers."""
        from optuna.trial import TrialState

        with self.lock:
            for number, (proc, trial) in list(self.processes.items()):
                proc.terminate()
                self.claims.pop(number, None)
                try:
                    trial.set_user_attr(FAILURE, reason)
                    self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                except Exception:  # the storage is what failed: the next run finds the trial's worker gone
                    pass
                self.processes.pop(number, None)
