"""A sweep spec, ``sweeps/NAME.yaml``: which recipe, what varies (a grid, a TPE search, or both), which metric.

``load_sweep(NAME)`` finds and reads it, checks it (one line naming the field on any error) and validates
every grid point as a config before anything runs; ``planned_trials`` lists the runs it makes. How the
trials are run is ``lab.sweep``'s business (and ``lab.sweep.slurm``'s on a cluster).
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

from pydantic import Field

from lab.config import ConfigError, Section, _key, check_name, from_dict, make_config, quote, read_yaml
from lab.nets.names import NAMING_FIELDS
from lab.records import SUMMARY_METRICS

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # lab/sweep/spec.py: the project holding sweeps/ and experiments/
METRICS = SUMMARY_METRICS  # a sweep selects any metric of a run's summary (named in lab.records)
NAMING_KEYS = {f"model.{f}" for f in NAMING_FIELDS} | {"train.seed"}  # what run names already say
PRUNERS = {"none": "NopPruner", "median": "MedianPruner", "hyperband": "HyperbandPruner"}  # pruner: NAME -> Optuna's


class SweepSpec(Section):
    """``sweeps/NAME.yaml``: which recipe, what varies (a grid, a TPE search, or both) and which metric."""

    recipe: str  # experiments/RECIPE.yaml, or a path relative to the sweep file
    metric: str = "val_err"
    direction: str = "minimize"
    fixed: dict[str, Any] = Field(default_factory=dict)  # overrides of the recipe for every trial
    grid: dict[str, list] = Field(default_factory=dict)  # every combination runs once
    exclude: list[dict] = Field(default_factory=list)  # combinations left out, e.g. {model.arch: plain, model.shortcut: B}
    when: list[dict] = Field(default_factory=list)  # per-point settings: {match: {model.depth: 110}, set: {optim.lr: ..}}
    search: dict[str, dict] = Field(default_factory=dict)  # TPE: {low, high, log} or {choices}
    n_trials: int | None = None  # budget of a search without a grid
    sampler_seed: int = 0
    # Optuna's pruner, told the metric at every evaluation: none (the default: a depth study runs every net to
    # the end), median or hyperband, by name or as {name: median, n_startup_trials: 5, n_warmup_steps: 60}
    pruner: Any = "none"

    def check(self) -> None:
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
        self.make_pruner()  # an unknown name or argument is refused here, before anything runs
        if not self.grid and not self.search:
            raise ConfigError("nothing varies: give a grid (e.g. grid: {model.depth: [20, 56]}) or a search")
        if self.grid and self.n_trials is not None:
            raise ConfigError("n_trials: a grid runs each of its points once; n_trials is only for a search without a grid")
        if self.search and not self.grid and not (self.n_trials and self.n_trials > 0):
            raise ConfigError("n_trials: a search without a grid needs a budget, e.g. n_trials: 20")

    @property
    def pruner_name(self) -> str:
        return self.pruner.get("name") if isinstance(self.pruner, dict) else self.pruner

    def make_pruner(self) -> Any:
        """The Optuna pruner the spec names, with its arguments."""
        import optuna

        name = self.pruner_name
        if not isinstance(name, str) or name not in PRUNERS:
            raise ConfigError(f"pruner: {quote(name)} is not one of {', '.join(PRUNERS)} "
                              "(e.g. pruner: median, or pruner: {name: median, n_warmup_steps: 60})")
        import inspect

        args = {k: v for k, v in self.pruner.items() if k != "name"} if isinstance(self.pruner, dict) else {}
        cls = getattr(optuna.pruners, PRUNERS[name])
        known = [k for k in inspect.signature(cls).parameters]
        unknown = [k for k in args if k not in known]
        if unknown:
            raise ConfigError(f"pruner.{_key(unknown[0])}: not an argument of Optuna's {cls.__name__} "
                              f"(known: {', '.join(known) or 'none'})")
        try:
            return cls(**args)
        except (TypeError, ValueError) as e:  # an unknown argument, a value Optuna refuses
            raise ConfigError(f"pruner: {name}: {e}") from None

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
    known = known_sweeps()
    raise ConfigError(f"sweep {name!r}: no sweeps/{name}.yaml{did_you_mean(name, known)} (known: {', '.join(known)})")


def known_sweeps() -> list[str]:
    """The sweeps a name can find: ``sweeps/*.yaml`` here and in lab's project."""
    return sorted({p.stem for root in (Path.cwd(), PROJECT_ROOT) for p in (root / "sweeps").glob("*.yaml")})


def close_names(name: str, known: list[str]) -> list[str]:
    """The names of ``known`` (all of which exist) that ``name`` looks like a typo of, closest first."""
    import difflib

    return difflib.get_close_matches(name, known, n=2, cutoff=0.75)


def did_you_mean(name: str, known: list[str]) -> str:
    """``; did you mean depth-study?`` when ``name`` is close to one of ``known``, else nothing."""
    close = close_names(name, known)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def find_recipe(recipe: str, sweep_file: Path) -> Path:
    if recipe.endswith((".yaml", ".yml")):
        return (sweep_file.parent / recipe).resolve()
    return sweep_file.resolve().parent.parent / "experiments" / f"{recipe}.yaml"


def load_sweep(name: str) -> tuple[str, SweepSpec, dict[str, Any]]:
    """(study name, spec, recipe data); every grid point is validated as a config here, before anything runs."""
    path = find_sweep(name)
    shown = str(path) if str(path).isprintable() else quote(str(path), 200)  # a newline in it stays on one line
    check_name(path.stem, f"{shown}: the sweep's name (its file name, the study's folder)")
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


def planned_trials(spec: SweepSpec, recipe: dict[str, Any], cli: dict[str, Any]) -> list[tuple[str, Any]]:
    """(run name, config) of every trial the sweep would run; searched values shown at their lower bound.

    Runs whose name the grid does not fix end in ``-t#``: the Optuna trial number, given when the trial starts.
    """
    example = _search_example(spec)
    configs = [make_config(recipe, spec.overrides(p, cli, example)) for p in spec.grid_points() or [{}]]
    if not spec.grid:
        return [(f"{configs[0].run_name}-t#", configs[0]) for _ in range(spec.n_trials)]
    return [(c.run_name if plain_name(spec) else f"{c.run_name}-t#", c) for c in configs]


def plain_name(spec: SweepSpec) -> bool:
    """Whether a run's paper-like name (``resnet-110-B-s0``) tells its trial from every other of the sweep."""
    return not spec.search and set(spec.grid) <= NAMING_KEYS


def resolved_yaml(name: str, spec: SweepSpec, recipe: dict[str, Any], cli: dict[str, Any]) -> str:
    """``lab sweep NAME --print-config``: what every trial would run, as YAML: the fields all trials share under
    ``config`` and each trial's own values under ``trials`` (searched values at their lower bounds)."""
    from lab.config import config_yaml, flat

    trials = planned_trials(spec, recipe, cli)
    flats = [flat(config) for _, config in trials]
    varying = [k for k in flats[0] if any(f[k] != flats[0][k] for f in flats)]
    shared = {section: {k: v for k, v in fields.items() if f"{section}.{k}" not in varying}
              for section, fields in trials[0][1].to_dict().items()}
    spec_data = {k: v for k, v in spec.model_dump().items() if v not in ({}, [], None)}
    head = (f"# {name}: {len(trials)} trial{'s' if len(trials) != 1 else ''}; each runs `config` with its own values "
            f"under `trials`" + ("; searched values at their lower bounds" if spec.search else "") + "\n")
    return head + config_yaml({"sweep": spec_data, "config": shared,
                               "trials": [{"run": run, **{k: f[k] for k in varying}} for (run, _), f in zip(trials, flats)]})
