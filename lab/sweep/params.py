"""A sweep's grid points and searched values as Optuna parameters of its trials: what Optuna's dataframe, plots and
importances, and optuna-dashboard, show a study varying."""
from __future__ import annotations

from typing import Any

from lab.config import DATASETS, PRECISIONS, SCHEDULES
from lab.nets import ARCHS, SHORTCUTS, STYLES
from lab.records import is_number
from lab.sweep.protocol import param_value
from lab.sweep.spec import SweepSpec


def suggest(trial: Any, key: str, dist: dict[str, Any]) -> Any:
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


def suggest_grid(study: Any, spec: SweepSpec, trial: Any, point: dict[str, Any]) -> bool:
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
    for t in study.get_trials(deepcopy=False):
        for key, dist in t.distributions.items():
            known.setdefault(key, dist)
    for key, values in spec.grid.items():
        if key in spec.search:  # the searched value is the parameter
            continue
        value = param_value(point[key])
        got = _suggest_value(trial, key, [param_value(v) for v in values], value, known.get(key))
        if got is not _LEFT_OUT and got != value:
            return False
    return True
