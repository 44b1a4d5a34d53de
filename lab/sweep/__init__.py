"""``lab sweep NAME``: an Optuna study over configs, every trial a ``train(config)`` in its own process.

The rooms: ``spec`` (the sweep file: grid, search, pruner; its planned trials), ``protocol`` (a trial's states in
the study and the user attributes that record them), ``ledger`` (``Ledger``: the study's state and its
transitions: enqueue, claim, reap, requeue), ``params`` (the grid as Optuna parameters), ``coordinator`` (``Sweep``:
one per ``lab sweep`` process, its threads claim and run trials), ``running`` (the coordinator's trial processes),
``watch`` (a running trial's progress and metric), ``outcome`` (how the study is told that a trial ended),
``trial`` (the trial process), ``status`` (``--status``), ``dryrun`` (``--dry-run`` and the cost model),
``storage`` (the study's journal file or database), ``slurm`` (``--launcher slurm``), ``packing`` (trials per GPU).

The names below come from those rooms on first use, so that importing one room (``lab.sweep.spec``, say, which
loads no torch) does not load the others.
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Sweep": "coordinator", "SweepStopped": "coordinator", "StallWatch": "watch",
    "load_sweep": "spec", "planned_trials": "spec", "SweepSpec": "spec",
    "dry_run": "dryrun", "print_status": "status",
    "STALE_AFTER_S": "protocol", "EXIT_CHECKPOINTED": "protocol", "STALL_FLOOR_S": "protocol",
    "STARTUP_STALL_S": "protocol",
}
ROOMS = ("spec", "protocol", "ledger", "params", "coordinator", "running", "watch", "outcome", "trial", "status", "dryrun",
         "storage", "slurm", "packing")


def __getattr__(name: str) -> Any:  # PEP 562
    if name in ROOMS:
        return importlib.import_module(f"lab.sweep.{name}")
    if name not in _WHERE:
        raise AttributeError(f"module 'lab.sweep' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lab.sweep.{_WHERE[name]}"), name)
