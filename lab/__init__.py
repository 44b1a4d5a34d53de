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


def git_commit() -> str | None:
    """The git commit of this code (``+dirty`` with uncommitted changes), or None when it is not a checkout's top
    folder: an installed copy inside some other repository (a virtual environment in a project) is not that commit.
    Needs no torch: ``lab --version`` answers at once; run summaries record it as their ``code_version``."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent

    def git(*words: str) -> str | None:
        try:
            done = subprocess.run(["git", *words], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top_and_head = (git("rev-parse", "--show-toplevel", "HEAD") or "").splitlines()
    if len(top_and_head) != 2 or Path(top_and_head[0]).resolve() != root:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return top_and_head[1][:12] + ("+dirty" if dirty else "")


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
