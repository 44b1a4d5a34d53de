"""``lab sweep NAME``: an Optuna study over configs, every trial a ``train(config)`` in its own process.

Grid sweeps enqueue each grid point once as a waiting trial; ``study.ask()`` hands a waiting trial to
exactly one worker, and a worker that still meets a point some other trial holds (two machines
enqueueing at once) steps aside, so each point runs once. Running the command again resumes: points
already complete are skipped, and trials whose worker died are failed and their points run again.

One process per trial because W&B and Lightning keep process-wide state (an active ``wandb.run``,
``WANDB_MODE``): trials sharing a process would merge into one W&B run. The processes fork from a
server that imported torch and Lightning once, so a trial starts in well under a second.
"""
from __future__ import annotations

import errno
import itertools
import json
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.config import Config, ConfigError, from_dict, make_config, quote, read_yaml
from lab.storage import StorageUnavailable, disk_full, make_storage

PROJECT_ROOT = Path(__file__).resolve().parent.parent
METRICS = ("train_err", "val_err", "test_err", "best_val_err", "train_loss", "val_loss", "test_loss")
HEARTBEAT_S = 30  # how often a running trial's coordinator says it is alive
EXIT_DISK_FULL = 75  # a trial process's exit status when it could not write its record (EX_TEMPFAIL)
STALE_AFTER_S = 600  # a trial on another host with no heartbeat for this long has lost its worker
NAMING_KEYS = {"model.arch", "model.depth", "model.shortcut", "train.seed"}  # what run names already say


@dataclass
class SweepSpec:
    """``sweeps/NAME.yaml``: which recipe, what varies (a grid, a TPE search, or both) and which metric."""

    recipe: str  # experiments/RECIPE.yaml, or a path relative to the sweep file
    metric: str = "val_err"
    direction: str = "minimize"
    fixed: dict[str, Any] = field(default_factory=dict)  # overrides of the recipe for every trial
    grid: dict[str, list] = field(default_factory=dict)  # every combination runs once
    exclude: list[dict] = field(default_factory=list)  # combinations left out, e.g. {model.arch: plain, model.shortcut: B}
    when: list[dict] = field(default_factory=list)  # per-point settings: {match: {model.depth: 110}, set: {optim.lr: ..}}
    search: dict[str, dict] = field(default_factory=dict)  # TPE: {low, high, log} or {choices}
    n_trials: int | None = None  # budget of a search without a grid
    sampler_seed: int = 0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"metric: {quote(self.metric)} is not one of {', '.join(METRICS)}")
        if self.direction not in ("minimize", "maximize"):
            raise ConfigError(f"direction: {quote(self.direction)} is not minimize or maximize")
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"grid.{key}: expected a non-empty list of values, got {quote(values)}")
            seen = [json.dumps(v, sort_keys=True) for v in values]
            twice = [v for i, v in enumerate(values) if seen[i] in seen[:i]]
            if twice:  # the point would be queued once and counted twice: "1/2 done" forever
                raise ConfigError(f"grid.{key}: {quote(twice[0])} is listed twice; list each value once")
        for key, dist in self.search.items():
            if not isinstance(dist, dict) or not ({"choices"} <= dist.keys() or {"low", "high"} <= dist.keys()):
                raise ConfigError(f"search.{key}: expected {{low: .., high: .., log: true}} or {{choices: [..]}}")
            if set(dist) - {"low", "high", "log", "step", "choices"}:
                raise ConfigError(f"search.{key}: unknown keys {sorted(set(dist) - {'low', 'high', 'log', 'step', 'choices'})}")
        for where, match in [(f"exclude[{i}]", m) for i, m in enumerate(self.exclude)] + [
            (f"when[{i}].match", rule.get("match") if isinstance(rule, dict) else None) for i, rule in enumerate(self.when)
        ]:
            if not isinstance(match, dict) or not match or set(match) - set(self.grid):
                raise ConfigError(f"{where}: expected a mapping of grid keys ({', '.join(self.grid) or 'none'}) to values")
            for key, value in match.items():  # a typo ('Plain', "110") would otherwise match nothing, silently
                unknown = [v for v in (value if isinstance(value, list) else [value]) if v not in self.grid[key]]
                if unknown:
                    raise ConfigError(f"{where}.{key}: {quote(unknown)} not among the grid's values {quote(self.grid[key])}")
        for i, rule in enumerate(self.when):
            if set(rule) != {"match", "set"} or not isinstance(rule["set"], dict) or set(rule["set"]) & set(self.grid):
                raise ConfigError(f"when[{i}]: expected {{match: {{GRID_KEY: VALUE}}, set: {{SECTION.FIELD: VALUE}}}} setting no grid key")
            if any(str(k).startswith("track.") for k in rule["set"]):
                raise ConfigError(f"when[{i}].set: track.* says where records go, the same for every trial of a study")
        if not self.grid and not self.search:
            raise ConfigError("nothing varies: give a grid (e.g. grid: {model.depth: [20, 56]}) or a search")
        if self.grid and self.n_trials is not None:
            raise ConfigError("n_trials: a grid runs each of its points once; n_trials is only for a search without a grid")
        if self.search and not self.grid and not (self.n_trials and self.n_trials > 0):
            raise ConfigError("n_trials: a search without a grid needs a budget, e.g. n_trials: 20")

    def grid_points(self) -> list[dict[str, Any]]:
        keys = list(self.grid)
        points = [dict(zip(keys, values)) for values in itertools.product(*self.grid.values())]
        return [p for p in points if not any(_matches(p, m) for m in self.exclude)]

    def settings(self, point: dict[str, Any]) -> dict[str, Any]:
        """The ``when`` settings that apply to ``point``, later rules winning."""
        return {k: v for rule in self.when if _matches(point, rule["match"]) for k, v in rule["set"].items()}

    def overrides(self, point: dict[str, Any], cli: dict[str, Any] | None = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Everything a trial sets in the recipe, later winning: ``fixed``, the point's ``when`` settings,
        the command line's overrides, the grid point itself, the searched values."""
        return {**self.fixed, **self.settings(point), **(cli or {}), **point, **(params or {})}

    @property
    def total(self) -> int:
        return len(self.grid_points()) if self.grid else self.n_trials


def _matches(point: dict[str, Any], match: dict[str, Any]) -> bool:
    """Whether ``point`` has every value of ``match`` (a list there means any of its values)."""
    return all(point.get(k) in (v if isinstance(v, list) else [v]) for k, v in match.items())


def find_sweep(name: str) -> Path:
    """``NAME`` -> ``sweeps/NAME.yaml`` here or in the project; a path is taken as it is."""
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        return Path(name)
    for root in (Path.cwd(), PROJECT_ROOT):
        if (root / "sweeps" / f"{name}.yaml").is_file():
            return root / "sweeps" / f"{name}.yaml"
    known = sorted(p.stem for p in (PROJECT_ROOT / "sweeps").glob("*.yaml"))
    raise ConfigError(f"sweep {name!r}: no sweeps/{name}.yaml (known: {', '.join(known)})")


def find_recipe(recipe: str, sweep_file: Path) -> Path:
    if recipe.endswith((".yaml", ".yml")):
        return (sweep_file.parent / recipe).resolve()
    return sweep_file.resolve().parent.parent / "experiments" / f"{recipe}.yaml"


def load_sweep(name: str) -> tuple[str, SweepSpec, dict[str, Any]]:
    """(study name, spec, recipe data); every grid point is validated as a config here, before anything runs."""
    path = find_sweep(name)
    data = read_yaml(path, example="{recipe: digits, grid: {model.depth: [20, 56]}}")  # its errors name the file
    try:
        spec = from_dict(SweepSpec, data)
        recipe = read_yaml(find_recipe(spec.recipe, path))
        if spec.grid and not spec.grid_points():
            raise ConfigError("exclude: leaves no grid point to run")
        for rule in spec.when:  # a rule for points all excluded is checked too: it may name a field that is not there
            if not any(_matches(p, rule["match"]) for p in spec.grid_points()):
                make_config(recipe, spec.overrides(spec.grid_points()[0], params={**_search_example(spec), **rule["set"]}))
        names: dict[str, dict] = {}
        for point, (run, _) in zip(spec.grid_points(), planned_trials(spec, recipe, {})):
            if run in names and not run.endswith("-t#"):
                raise ConfigError(
                    f"grid: points {names[run]} and {point} are the same run {run!r}"
                    + (" (a plain net has no shortcut)" if run.startswith("plain-") else "")
                    + "; leave one out with exclude, e.g. exclude: [{model.arch: plain, model.shortcut: [B, C]}]"
                )
            names[run] = point
    except (ConfigError, TypeError) as e:
        raise ConfigError(f"{path}: {e}") from None
    return path.stem, spec, recipe


def _search_example(spec: SweepSpec) -> dict[str, Any]:
    return {k: d["choices"][0] if "choices" in d else d["low"] for k, d in spec.search.items()}


def _suggest(trial: Any, key: str, dist: dict[str, Any]) -> Any:
    if "choices" in dist:
        return trial.suggest_categorical(key, dist["choices"])
    low, high = dist["low"], dist["high"]
    if isinstance(low, int) and isinstance(high, int) and not dist.get("log"):
        return trial.suggest_int(key, low, high, step=dist.get("step", 1))
    return trial.suggest_float(key, float(low), float(high), log=bool(dist.get("log")), step=dist.get("step"))


def planned_trials(spec: SweepSpec, recipe: dict[str, Any], cli: dict[str, Any]) -> list[tuple[str, Any]]:
    """(run name, config) of every trial the sweep would run; searched values shown at their lower bound.

    Runs whose name the grid does not fix end in ``-t#``: the Optuna trial number, given when the trial starts.
    """
    example = _search_example(spec)
    configs = [make_config(recipe, spec.overrides(p, cli, example)) for p in spec.grid_points() or [{}]]
    if not spec.grid:
        return [(f"{configs[0].run_name}-t#", configs[0]) for _ in range(spec.n_trials)]
    return [(c.run_name if _plain_name(spec) else f"{c.run_name}-t#", c) for c in configs]


def _plain_name(spec: SweepSpec) -> bool:
    """Whether a run's paper-like name (``resnet-110-B-s0``) tells its trial from every other of the sweep."""
    return not spec.search and set(spec.grid) <= NAMING_KEYS


def dry_run(name: str, spec: SweepSpec, recipe: dict[str, Any], overrides: dict[str, Any], out=sys.stdout) -> None:
    """Print every trial the sweep would run with its net's size and cost, and the totals; runs and writes nothing."""
    import torch

    from lab import nets
    from lab.data import input_shape

    trials = planned_trials(spec, recipe, overrides)
    cost: dict[tuple, tuple[int, int]] = {}
    rows, total_macs = [], 0.0
    for run, config in trials:
        m, (channels, height, width, classes) = config.model, input_shape(config.data)
        key = (m.arch, m.depth, m.shortcut, m.style, channels, height, width, classes)
        if key not in cost:
            with torch.device("meta"):  # shapes only: no memory, no initialisation cost, even for ResNet-152
                net = nets.build_net(nets.NetConfig(m.arch, m.depth, m.shortcut, channels, classes, m.style))
                cost[key] = nets.count_params(net), nets.multiply_adds(net, (channels, height, width))
        params, macs = cost[key]
        o = config.optim
        # a training step costs about 3 forward passes (forward, and backward for inputs and weights)
        total_macs += 3 * macs * o.batch_size * o.max_steps
        rows.append((run, f"{params:,}", _si(macs), f"{height}x{width}", f"{o.max_steps:,}", str(o.batch_size)))
    header = ("run", "params", "mult-adds/image", "input", "iterations", "batch")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"[{name}] dry run: {_plural(len(trials), 'trial')}; nothing is run or written", file=out)
    for row in [header, *rows]:
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))), file=out)
    absent = sorted({c.data.data_dir for _, c in trials if c.data.name == "imagefolder" and not (Path(c.data.data_dir) / "train").is_dir()})
    if absent:  # imagefolder_shape falls back to ImageNet's classes; say so rather than count silently
        print(f"[{name}] no {', '.join(absent)}/train here: counted with ImageNet's 1,000 classes", file=out)
    searched = f"; searched ({', '.join(spec.search)}) shown at their lower bounds" if spec.search else ""
    print(f"[{name}] total: {_plural(len(trials), 'trial')}, {_plural(len(cost), 'distinct net')}, "
          f"{_si(total_macs)} multiply-adds of training (about 3x forward per image){searched}", file=out)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _si(n: float) -> str:
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"


def _grid_key(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=True)


def _param_value(value: Any) -> Any:
    """A grid value as an Optuna categorical choice: a number, string, bool or None as it is, else its JSON."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value, sort_keys=True)


def _record_problem(run_dir: Path) -> str | None:
    """What is wrong with a finished run's record, if anything: a missing folder or an unreadable summary."""
    from lab.records import SUMMARY_FILE

    summary = run_dir / SUMMARY_FILE
    if not run_dir.is_dir():
        return f"its run folder {run_dir} is gone"
    try:
        data = json.loads(summary.read_text())
    except FileNotFoundError:
        return f"{summary} is missing"
    except (OSError, ValueError) as e:
        return f"{summary} is not readable ({quote(str(e), 60)})"
    return None if isinstance(data, dict) and "config" in data else f"{summary} is not a run summary"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _trial_main(config_data: dict, run_name: str, log_path: str, threads: int, coordinator_pid: int) -> None:
    """Body of a trial process: log to a file, die with the coordinator, train; exit 75 on a full disk."""
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as e:
        os._exit(EXIT_DISK_FULL if disk_full(e) else 1)
    os.dup2(fd, 1)
    os.dup2(fd, 2)

    def watch() -> None:  # an orphaned trial would race its own retry for the same run folder
        while _pid_alive(coordinator_pid):
            time.sleep(1)
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()
    import torch

    from lab.train import train

    torch.set_num_threads(threads)
    from lab.records import RunFailed

    try:
        train(make_config(config_data), run_name)
    except RunFailed as e:  # the run's own result (it diverged): one line in its log, not a traceback
        print(f"[lab sweep] {e}; record: {e.run_dir}", flush=True)
        sys.exit(1)
    except BaseException as e:
        if not any(disk_full(x) for x in _chain(e)):
            raise
        try:
            print(f"[lab sweep] {run_name} stopped: the disk is full ({e})", flush=True)
        except OSError:
            pass
        os._exit(EXIT_DISK_FULL)
    sys.stdout.flush()


def _chain(error: BaseException | None) -> list[BaseException]:
    """An exception and the ones it was raised from or while handling."""
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


@dataclass
class Claim:
    trial: Any
    config: Any
    run_name: str


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
        out=sys.stdout,
    ) -> None:
        import optuna

        self.name, self.spec, self.recipe, self.workers, self.out = name, spec, recipe, workers, out
        self.cli = {**(overrides or {}), "track.study": name}  # the command line's overrides, for every trial
        runs_dir = Path(make_config(recipe, spec.overrides({}, self.cli)).track.runs_dir)
        self.study_dir = runs_dir / name
        self.log_dir = self.study_dir / "logs"  # made when trials start: a command refused here leaves nothing
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        opened = make_storage(storage, self.study_dir)
        try:
            self.study = optuna.create_study(
                study_name=name,
                storage=opened,
                sampler=optuna.samplers.TPESampler(seed=spec.sampler_seed),
                direction=spec.direction,
                load_if_exists=True,
            )
        except ValueError as e:  # e.g. the stored study was made with another direction
            raise ConfigError(f"study {name!r}: {e}") from None
        self.storage = self.study._storage
        self.storage_kind = "database" if storage and "://" in storage else "journal file"
        self.lost: set[int] = set()  # trial numbers of complete trials whose record is gone (_check_records)
        self._check_same_base()
        # host:pid:token; the token tells this coordinator from an earlier one that had the same pid
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lock = threading.RLock()
        self.processes: dict[int, tuple[Any, Any]] = {}  # trial number -> (process, trial)
        self.failed = 0
        self.errors: list[Exception] = []
        self.stopping = False
        self.threads_per_trial = max(1, (os.cpu_count() or 1) // workers)
        self.mp = multiprocessing.get_context("forkserver")
        # torch, Lightning, W&B and scikit-learn imported once (about 13 s on 2 cores), not per trial
        self.mp.set_forkserver_preload(["lab.train", "wandb", "sklearn.datasets"])

    def _check_same_base(self) -> None:
        """Refuse to mix configs in one study: what does not vary must match what the study started with."""
        from optuna.trial import TrialState

        base = make_config(self.recipe, self.spec.overrides({}, self.cli)).to_dict()
        del base["track"]  # where records go and how W&B mirrors them may differ between machines
        for key in (*self.spec.grid, *self.spec.search):
            section, _, name = key.partition(".")
            base[section].pop(name, None)
        self._check_same_settings()
        stored = self.study.user_attrs.get("base_config")
        if stored is None or not self._trials(TrialState.COMPLETE, TrialState.RUNNING):
            # nothing ran to the end with the stored settings (say, every run diverged): the fixed ones count
            self.study.set_user_attr("base_config", base)
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
            point = t.user_attrs.get("grid")
            if point is None or _grid_key(point) not in in_grid or t.state.name not in ("COMPLETE", "RUNNING", "WAITING"):
                continue
            before, now = t.user_attrs.get("settings", {}), self.spec.settings(point)
            if before != now:
                raise ConfigError(
                    f"study {self.name!r} ran {point} with other per-point settings ({quote(before)}, now "
                    f"{quote(now)}); put the when rules back, or give the changed sweep a new name so the studies stay apart"
                )

    def _enqueue(self, point: dict[str, Any]) -> None:
        self.study.enqueue_trial({}, user_attrs={"grid": point, "settings": self.spec.settings(point)})

    # --- the study's state -------------------------------------------------------------

    def _trials(self, *states: Any) -> list[Any]:
        """The study's trials in ``states``; complete ones whose run record was lost do not count."""
        return [t for t in self.study.get_trials(deepcopy=False, states=states or None) if t.number not in self.lost]

    def _check_records(self) -> None:
        """Find complete trials whose run record is gone or damaged, so that their points run again.

        Optuna cannot reopen a finished trial, so the study remembers them in its ``lost_records``
        attribute (other coordinators read it too). Records are checked where this machine can see
        them: trials run here, and any whose folder is here (a shared filesystem).
        """
        from optuna.trial import TrialState

        lost = {int(k): v for k, v in self.study.user_attrs.get("lost_records", {}).items()}
        found = {}
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.number in lost or "run" not in t.user_attrs:
                continue
            record = Path(t.user_attrs.get("record", self.study_dir / t.user_attrs["run"]))
            here = str(t.user_attrs.get("worker", "")).split(":")[0] == socket.gethostname() or record.is_dir()
            problem = _record_problem(record) if here else None
            if problem:
                found[t.number] = problem
                self.progress(f"trial {t.number} finished, but {problem}: its point runs again")
        if found:
            lost.update(found)
            self.study.set_user_attr("lost_records", {str(k): v for k, v in lost.items()})
        self.lost = set(lost)

    def _reap_stale(self) -> list[dict[str, Any]]:
        """Fail running trials whose worker is gone; return their grid points."""
        from optuna.trial import TrialState

        host, now, points = socket.gethostname(), time.time(), []
        for t in self._trials(TrialState.RUNNING):
            worker = t.user_attrs.get("worker")
            if worker == self.worker_id:
                continue
            heartbeat = t.user_attrs.get("heartbeat", t.datetime_start.timestamp())
            w_host, w_pid, _ = (worker or "::").split(":")
            if worker is None:  # popped by ask() but never claimed: its coordinator died in between
                lost = now - heartbeat > 60
            else:
                lost = w_host == host and (int(w_pid) == os.getpid() or not _pid_alive(int(w_pid)))
            if lost or now - heartbeat > STALE_AFTER_S:
                try:
                    self.storage.set_trial_user_attr(t._trial_id, "failure", f"worker {worker} lost")
                    self.study.tell(t.number, state=TrialState.FAIL)
                except Exception:  # another coordinator failed it first
                    continue
                if "grid" in t.user_attrs:
                    points.append(t.user_attrs["grid"])
        return points

    def _enqueue_missing(self) -> int:
        from optuna.trial import TrialState

        active = {
            _grid_key(t.user_attrs["grid"])
            for t in self._trials(TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
            if "grid" in t.user_attrs
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
        running = len(self._trials(TrialState.RUNNING))
        remaining = max(0, self.spec.total - done - running - self.failed)
        return {"done": done, "running": running, "failed": self.failed, "remaining": remaining}

    def _done_keys(self) -> set[str]:
        from optuna.trial import TrialState

        return {_grid_key(t.user_attrs["grid"]) for t in self._trials(TrialState.COMPLETE) if "grid" in t.user_attrs}

    def _holder_of(self, trial: Any, point: dict[str, Any]) -> int | None:
        """Another trial that owns this grid point: a complete one, or an unfinished one with a lower number.

        Trial numbers are fixed when points are enqueued, before any race, so every worker agrees on
        the owner: of two unfinished trials of one point, the higher always steps aside.
        """
        from optuna.trial import TrialState

        key = _grid_key(point)
        for t in self._trials(TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING):
            if t.number != trial.number and _grid_key(t.user_attrs.get("grid", {})) == key:
                if t.state == TrialState.COMPLETE or t.number < trial.number:
                    return t.number
        return None

    # --- claiming, running and finishing one trial -----------------------------------

    def _budget_left(self) -> bool:
        from optuna.trial import TrialState

        if self.stopping:
            return False
        if self.spec.grid:
            return bool(self._trials(TrialState.WAITING))
        taken = len(self._trials(TrialState.COMPLETE, TrialState.RUNNING))
        return taken < self.spec.n_trials and self.failed < self.spec.n_trials

    def _claim(self) -> Claim | None:
        from optuna.trial import TrialState

        from lab.records import run_dir_for

        with self.lock:
            self.lost = {int(k) for k in self.study.user_attrs.get("lost_records", {})}  # other machines' finds too
            for point in self._reap_stale():
                self._enqueue(point)
            while self._budget_left():
                trial = self.study.ask()
                point = trial.user_attrs.get("grid", {})
                if self.spec.grid and (point not in self.spec.grid_points() or self._holder_of(trial, point) is not None):
                    trial.set_user_attr("skipped", "grid point held by another trial or not in the grid")
                    self.study.tell(trial, state=TrialState.PRUNED)
                    continue
                trial.set_user_attr("worker", self.worker_id)
                trial.set_user_attr("heartbeat", time.time())
                self._record_grid_params(trial, point)
                params = {k: _suggest(trial, k, d) for k, d in self.spec.search.items()}
                try:
                    config = make_config(self.recipe, self.spec.overrides(point, self.cli, params))
                except ConfigError as e:  # a sampled value the recipe rejects: this trial fails, the sweep goes on
                    self.failed += 1
                    trial.set_user_attr("failure", str(e))
                    self.study.tell(trial, state=TrialState.FAIL)
                    self.progress(f"trial {trial.number} FAILED: {e}")
                    continue
                run_name = config.run_name if _plain_name(self.spec) else f"{config.run_name}-t{trial.number}"
                trial.set_user_attr("run", run_name)
                trial.set_user_attr("record", str(run_dir_for(config, run_name).resolve()))
                return Claim(trial, config, run_name)
        return None

    def _record_grid_params(self, trial: Any, point: dict[str, Any]) -> None:
        """The point's values as the trial's parameters, each over the grid's values: Optuna's dataframe,
        plots, importances and optuna-dashboard then see what a study varies, like a searched value."""
        from optuna.distributions import CategoricalDistribution

        for key, values in self.spec.grid.items():
            if key in self.spec.search:  # the searched value is the parameter
                continue
            dist = CategoricalDistribution([_param_value(v) for v in values])
            self.storage.set_trial_param(trial._trial_id, key, dist.to_internal_repr(_param_value(point[key])), dist)

    def _run(self, claim: Claim) -> dict[str, Any] | None:
        """Train in a child process; heartbeat meanwhile; the summary, or None if the run failed."""
        from lab.records import finished_summary, run_dir_for

        log = self.log_dir / f"{claim.run_name}.log"
        args = (claim.config.to_dict(), claim.run_name, str(log), self.threads_per_trial, os.getpid())
        proc = self.mp.Process(target=_trial_main, args=args, name=claim.run_name)
        proc.start()
        self.processes[claim.trial.number] = (proc, claim.trial)
        last_beat = time.time()
        while proc.is_alive():
            proc.join(timeout=1)
            if time.time() - last_beat > HEARTBEAT_S:
                with self.lock:
                    claim.trial.set_user_attr("heartbeat", time.time())
                last_beat = time.time()
        self.processes.pop(claim.trial.number, None)
        # The summary, written last and atomically, is what makes a run finished: a process that
        # dies while shutting down after writing it (W&B's service, say) has still finished its run.
        summary = finished_summary(run_dir_for(claim.config, claim.run_name), claim.config)
        if proc.exitcode != 0:
            try:
                with open(log, "a") as f:
                    f.write(f"\n[lab sweep] trial process ended with exit code {proc.exitcode}"
                            f"{' after writing its summary' if summary else ''}\n")
            except OSError as e:  # a full disk: the sweep stops below, saying so once
                if not disk_full(e):
                    raise
        if summary is None and proc.exitcode in (EXIT_DISK_FULL, -signal.SIGXFSZ):
            strerror = "a file-size limit" if proc.exitcode == -signal.SIGXFSZ else os.strerror(errno.ENOSPC)
            raise OSError(errno.ENOSPC, strerror, str(run_dir_for(claim.config, claim.run_name)))
        return summary

    def _finish(self, claim: Claim, summary: dict[str, Any] | None) -> None:
        from optuna.trial import TrialState

        from lab.records import read_failure, run_dir_for

        with self.lock:
            trial = claim.trial
            if summary is None:
                self.failed += 1
                log = self.log_dir / f"{claim.run_name}.log"
                reason = read_failure(run_dir_for(claim.config, claim.run_name))  # e.g. "diverged at iteration 37"
                trial.set_user_attr("failure", reason or f"see {log}")
                self.study.tell(trial, state=TrialState.FAIL)
                note = f"{claim.run_name} FAILED{': ' + reason if reason else ''}; its log: {log}"
            else:
                for key in (*METRICS, "wall_s", "steps"):
                    if key in summary:
                        trial.set_user_attr(key, summary[key])
                trial.set_user_attr("n_params", summary["params"])  # Optuna's "params" are the trial's parameters
                self.study.tell(trial, summary[self.spec.metric])
                note = (
                    f"{claim.run_name} done in {summary['wall_s']:.0f}s: "
                    f"{self.spec.metric} {summary[self.spec.metric]:.2f}, train_err {summary['train_err']:.2f}"
                )
            self.progress(note)

    def progress(self, note: str = "") -> None:
        c = self.counts()
        line = f"[{self.name}] {c['done']}/{self.spec.total} done, {c['running']} running, {c['failed']} failed, {c['remaining']} remaining"
        print(line + (f" | {note}" if note else ""), file=self.out, flush=True)

    def _worker(self) -> None:
        try:
            while (claim := self._claim()) is not None:
                self.progress(f"{claim.run_name} started")
                summary = self._run(claim)
                if self.stopping:
                    return
                self._finish(claim, summary)
        except Exception as e:  # the storage became unreachable, the disk is full: stop all, say so in run()
            self.errors.append(e)
            self.stopping = True
            self._stop_trials("sweep stopped")

    def run(self) -> dict[str, int]:
        """Run every remaining trial; returns the final counts. Ctrl-C stops the trials and fails them cleanly."""
        from optuna.trial import TrialState

        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with self.lock:
                self._check_records()
                self._reap_stale()  # _enqueue_missing puts their points back
                added = self._enqueue_missing() if self.spec.grid else 0
        except Exception as e:
            self.errors.append(e)
            return self._raise_stopped()
        self.progress(f"storage: {self.storage_kind}, {added} points queued, {self.workers} workers")
        threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(self.workers)]
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=0.5)
        except KeyboardInterrupt:
            self.stopping = True
            self._stop_trials("interrupted")
            raise
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

    def _stop_trials(self, reason: str) -> None:
        """Terminate running trial processes and fail their trials where the storage still answers."""
        from optuna.trial import TrialState

        with self.lock:
            for number, (proc, trial) in list(self.processes.items()):
                proc.terminate()
                try:
                    trial.set_user_attr("failure", reason)
                    self.study.tell(trial, state=TrialState.FAIL)
                except Exception:  # the storage is what failed: the next run finds the trial's worker gone
                    pass
                self.processes.pop(number, None)
