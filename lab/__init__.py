"""lab: depth studies of plain and residual networks (He et al. 2015).

``from lab.train import train`` trains one run from a :class:`Config`; ``lab.sweep`` runs Optuna
studies of them; the top level holds what needs only torch and YAML.

The names below are imported on first use, so that ``import lab`` (every ``lab`` command, ``lab --version``
among them) does not wait for torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the package's version (pyproject.toml reads it from here)

_WHERE = {
    "Config": "lab.config",
    "ConfigError": "lab.config",
    "load_config": "lab.config",
    "make_config": "lab.config",
    "NetConfig": "lab.nets",
    "build_net": "lab.nets",
    "count_params": "lab.nets",
    "run_name": "lab.nets",
}

__all__ = ["Config", "ConfigError", "NetConfig", "build_net", "count_params", "load_config", "make_config", "run_name"]

if TYPE_CHECKING:
    from lab.config import Config, ConfigError, load_config, make_config
    from lab.nets import NetConfig, build_net, count_params, run_name


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
