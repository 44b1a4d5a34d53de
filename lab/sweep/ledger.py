"""A study as every coordinator of it sees it: ``open_study`` opens (or makes) it and refuses a changed sweep;
``Ledger`` reads which grid points are queued, taken, finished or lost, and makes the transitions of
``lab.sweep.protocol`` in the study's storage (enqueue, reap, requeue, finish). It starts no process: the tests
drive it on an in-memory Optuna study."""
from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lab.config import Config, ConfigError, canonical, make_config, quote
from lab.sweep.protocol import (
    BASE_CONFIG,
    CLAIM_LOST_S,
    CONTINUES,
    FAILURE,
    GRID,
    HEARTBEAT,
    LOST_RECORDS,
    PRUNED_AT,
    RECORD,
    RUN,
    SETTINGS,
    STALE_AFTER_S,
    WANDB_GROUP,
    WORKER,
    grid_key,
    param_value,
    pid_alive,
)
from lab.sweep.spec import SweepSpec


def open_study(name: str, spec: SweepSpec, storage: Any) -> Any:
    """The Optuna study ``name`` in ``storage`` (an opened one: ``lab.sweep.storage.make_storage``), made if new,
    with the spec's direction, sampler and pruner, its metric's name, and its W&B group."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=optuna.samplers.TPESampler(seed=spec.sampler_seed),
                                    pruner=spec.make_pruner(), direction=spec.direction, load_if_exists=True)
    except ValueError as e:  # e.g. the stored study was made with another direction
        raise ConfigError(f"study {name!r}: {e}") from None
    if study.metric_names != [spec.metric]:  # what optuna-dashboard and Optuna's plots call the objective
        import warnings

        with warnings.catch_warnings():  # "experimental" since Optuna 3.2: about Optuna, nothing a user can do
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([spec.metric])
    if WANDB_GROUP not in study.user_attrs:  # two studies of one name (two runs folders) are two groups
        # a study that ran before groups had ids keeps its name as its group: its runs stay together in W&B
        older = bool(study.get_trials(deepcopy=False))
        study.set_user_attr(WANDB_GROUP, name if older else f"{name}-{uuid.uuid4().hex[:6]}")
    return study


def _record_problem(run_dir: Path) -> str | None:
    """What is wrong with a finished run's record, if anything: a missing folder or an unreadable summary."""
    from lab.records import RunRecord

    return RunRecord(run_dir).summary_problem()


@dataclass
class Claim:
    """A trial a coordinator claimed: it runs it, and only it tells the study how it ended (``lab.sweep.outcome``)."""

    trial: Any
    config: Any
    run_name: str
    pruned: tuple[int, float] | None = None  # (iteration, value) at which the pruner stopped it
    pruned_s: float = 0.0  # when (time.time()): a trial process that outlives SIGTERM long is killed
    stalled: float | None = None  # seconds without progress after which its process was killed (StallWatch)


class Ledger:
    """The trials of ``study`` (a sweep ``spec`` named ``name``, run folders under ``study_dir``) as the coordinator
    ``worker_id`` (host:pid:token) sees them. ``say`` prints a line of the sweep's progress."""

    def __init__(self, study: Any, name: str, spec: SweepSpec, study_dir: Path, worker_id: str,
                 say: Callable[[str], None]) -> None:
        self.study, self.name, self.spec, self.study_dir, self.worker_id, self.say = study, name, spec, study_dir, worker_id, say
        self.lost: set[int] = set()  # trial numbers of complete trials whose record is gone (check_records)
        self.failed = 0  # trials this coordinator failed for good

    # --- what the study holds ------------------------------------------------------------

    def trials(self, *states: Any) -> list[Any]:
        """The study's trials in ``states``; complete ones whose run record was lost do not count."""
        return [t for t in self.study.get_trials(deepcopy=False, states=states or None) if t.number not in self.lost]

    def pruned(self) -> list[Any]:
        """Trials whose run the spec's pruner stopped: their points are taken, as complete ones' are."""
        from optuna.trial import TrialState

        return [t for t in self.trials(TrialState.PRUNED) if PRUNED_AT in t.user_attrs]

    def ended(self) -> list[Any]:
        """Trials whose point is taken for good: complete, or pruned by the spec's pruner."""
        from optuna.trial import TrialState

        return self.trials(TrialState.COMPLETE) + self.pruned()

    def done_keys(self) -> set[str]:
        from optuna.trial import TrialState

        return {grid_key(t.user_attrs[GRID]) for t in self.trials(TrialState.COMPLETE) if GRID in t.user_attrs}

    def counts(self) -> dict[str, int]:
        from optuna.trial import TrialState

        done = len(self.done_keys()) if self.spec.grid else len(self.trials(TrialState.COMPLETE))
        pruned = len({grid_key(t.user_attrs.get(GRID, {})) for t in self.pruned()} - self.done_keys()) if self.spec.grid \
            else len(self.pruned())
        running = len(self.trials(TrialState.RUNNING))
        remaining = max(0, self.spec.total - done - pruned - running - self.failed)
        return {"done": done, "pruned": pruned, "running": running, "failed": self.failed, "remaining": remaining}

    def taken_keys(self) -> set[str]:
        """The grid points finished, pruned or running now."""
        from optuna.trial import TrialState

        return self.done_keys() | {grid_key(t.user_attrs.get(GRID, {})) for t in self.trials(TrialState.RUNNING) + self.pruned()}

    def holder_of(self, trial: Any, point: dict[str, Any]) -> int | None:
        """Another trial that owns this grid point: a complete one, or an unfinished one with a lower number.

        Trial numbers are fixed when points are enqueued, before any race, so every coordinator agrees on
        the owner: of two unfinished trials of one point, the higher always steps aside.
        """
        from optuna.trial import TrialState

        key = grid_key(point)
        for t in self.trials(TrialState.RUNNING, TrialState.WAITING) + self.ended():
            if t.number != trial.number and grid_key(t.user_attrs.get(GRID, {})) == key:
                if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or t.number < trial.number:
                    return t.number
        return None

    def budget_left(self) -> bool:
        """Whether a trial is left to claim: a waiting grid point, or a search with trials to go."""
        from optuna.trial import TrialState

        if self.spec.grid:
            return bool(self.trials(TrialState.WAITING))
        taken = len(self.trials(TrialState.RUNNING) + self.ended())
        return taken < self.spec.n_trials and self.failed < self.spec.n_trials

    def others_running(self) -> bool:
        """Whether trials of other coordinators are running (one may yet be lost and need taking over)."""
        from optuna.trial import TrialState

        return any(t.user_attrs.get(WORKER) != self.worker_id for t in self.trials(TrialState.RUNNING))

    # --- transitions ---------------------------------------------------------------------

    def enqueue(self, point: dict[str, Any], params: dict[str, Any] | None = None, **attrs: Any) -> None:
        """Queue ``point`` as a waiting trial whose parameters are the point's values (and ``params``)."""
        fixed = {k: param_value(v) for k, v in point.items() if k not in self.spec.search}
        self.study.enqueue_trial({**fixed, **(params or {})}, user_attrs={GRID: point, SETTINGS: self.spec.settings(point), **attrs})

    def queue(self) -> int:
        """Bring the study up to date before trials run: points of lost records and lost coordinators, and grid
        points not yet in the study, queued; returns how many grid points were added."""
        self.check_records()
        for lost in self.reap_stale():
            self.requeue(lost, "lost its worker")
        return self._enqueue_missing() if self.spec.grid else 0

    def _enqueue_missing(self) -> int:
        from optuna.trial import TrialState

        active = {grid_key(t.user_attrs[GRID]) for t in self.trials(TrialState.RUNNING, TrialState.WAITING) + self.ended()
                  if GRID in t.user_attrs}
        missing = [p for p in self.spec.grid_points() if grid_key(p) not in active]
        # Deepest first: a trial's cost grows with depth, and parallel trials finish together
        # when the short ones come last (longest-processing-time-first scheduling).
        missing.sort(key=lambda p: -p.get("model.depth", 0))
        for point in missing:
            self.enqueue(point)
        return len(missing)

    def check_records(self) -> None:
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
                self.say(f"trial {t.number} finished, but {problem}: its point runs again")
        if found:
            lost.update(found)
            self.study.set_user_attr(LOST_RECORDS, {str(k): v for k, v in lost.items()})
        self.lost = set(lost)

    def reap_stale(self) -> list[Any]:
        """Fail running trials whose coordinator is gone; return them (``requeue`` continues their runs)."""
        from optuna.trial import TrialState

        host, now, reaped = socket.gethostname(), time.time(), []
        for t in self.trials(TrialState.RUNNING):
            worker = t.user_attrs.get(WORKER)
            if worker == self.worker_id:
                continue
            heartbeat = t.user_attrs.get(HEARTBEAT, t.datetime_start.timestamp())
            w_host, w_pid, _ = (worker or "::").split(":")
            if worker is None:  # popped by ask() but never claimed: its coordinator died in between
                lost = now - heartbeat > CLAIM_LOST_S
            else:
                lost = w_host == host and (int(w_pid) == os.getpid() or not pid_alive(int(w_pid)))
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

    def requeue(self, trial: Any, why: str, more: dict[str, Any] | None = None) -> None:
        """Queue the point of a trial that stopped unfinished again, with its parameters and run name (and ``more``
        user attributes): the trial that takes it resumes the run from its last checkpoint (also a ``-t#`` run, and
        a searched one)."""
        attrs = {**{k: trial.user_attrs[k] for k in (RUN,) if k in trial.user_attrs}, **(more or {})}
        params = {k: v for k, v in trial.params.items() if k in self.spec.search}
        if self.spec.grid:
            self.enqueue(trial.user_attrs.get(GRID, {}), params, **attrs, **{CONTINUES: trial.number})
        else:
            self.study.enqueue_trial(params, user_attrs={**attrs, CONTINUES: trial.number})
        self.say(f"trial {trial.number} {why}: its run continues in a new trial")


def check_same_sweep(study: Any, name: str, spec: SweepSpec, recipe: dict[str, Any], cli: dict[str, Any]) -> None:
    """Refuse to mix configs in one study: what does not vary must match what the study started with, and the
    ``when`` rules of points the study already has must not change (rules for new points are fine)."""
    # without track (where records go and how W&B mirrors them may differ between machines), milestones as
    # iterations (a study started with [120] goes on with [0.75] of 160)
    base = canonical(make_config(recipe, spec.overrides({}, cli)))
    for key in (*spec.grid, *spec.search):
        section, _, field = key.partition(".")
        base[section].pop(field, None)
    in_grid = {grid_key(p) for p in spec.grid_points()}
    ran = False  # whether a trial ran with the stored settings: running, complete, or pruned by the spec's pruner
    for t in study.get_trials(deepcopy=False):
        taken = t.state.name in ("COMPLETE", "RUNNING") or (t.state.name == "PRUNED" and PRUNED_AT in t.user_attrs)
        ran = ran or taken
        point = t.user_attrs.get(GRID)
        if point is None or grid_key(point) not in in_grid or not (taken or t.state.name == "WAITING"):
            continue
        before, now = t.user_attrs.get(SETTINGS, {}), spec.settings(point)
        if before != now:
            raise ConfigError(
                f"study {name!r} ran {point} with other per-point settings ({quote(before)}, now "
                f"{quote(now)}); put the when rules back, or give the changed sweep a new name so the studies stay apart"
            )
    stored = study.user_attrs.get(BASE_CONFIG)
    if stored is None or not ran:
        # nothing ran to the end with the stored settings (say, every run diverged): the fixed ones count
        study.set_user_attr(BASE_CONFIG, base)
        return
    defaults = Config().to_dict()  # a field that a newer lab added is absent from older studies: its default there

    def value(config: dict, section: str, key: str) -> Any:
        return config.get(section, {}).get(key, defaults.get(section, {}).get(key))

    changed = sorted(f"{section}.{k}" for section in {*base, *stored} for k in {*base.get(section, {}), *stored.get(section, {})}
                     if value(stored, section, k) != value(base, section, k))
    if changed:
        raise ConfigError(
            f"study {name!r} was started with other settings ({', '.join(changed)} differ); "
            f"put them back, or give the changed sweep a new name so the studies stay apart"
        )
