"""Where a sweep's trials run on this machine: several small nets share each GPU, spread across the GPUs.

Every trial is a process of its own (``lab.sweep``). A CIFAR-sized net leaves most of a big GPU idle (it is
launch-bound: four ResNet-56 processes on one H200 trained 1.95x the images of one, ``../shared/GPU.md``),
so a GPU takes several trials at once. Each GPU has ``UNITS`` units; a trial takes ``UNITS //
trials_per_gpu(config)`` of them on the GPU with the most free units, waiting while none has enough, and
its process sees only that GPU (``CUDA_VISIBLE_DEVICES``). CPU threads are split evenly between the
processes, so they do not oversubscribe the cores.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Callable, Sequence

UNITS = 4  # a GPU's capacity: the number of the smallest nets it runs at once
MAX_CPU_WORKERS = 8  # without a GPU: one trial per core, up to this (each process holds a torch runtime)
# CIFAR-style nets up to this depth -> trials per GPU; deeper ones and ImageNet-style nets have a GPU each.
PER_GPU = ((56, 4), (110, 2))


def trials_per_gpu(config: Any) -> int:
    """How many trials of ``config``'s net share one GPU (the rule above; ``train.trials_per_gpu`` could refine it)."""
    if config.model.style != "cifar" or config.data.name == "imagefolder":
        return 1
    return next((n for depth, n in PER_GPU if config.model.depth <= depth), 1)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them (a SLURM allocation's, say)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    named = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return named[:count] if named else [str(i) for i in range(count)]


def default_workers(configs: Sequence[Any], gpus: Sequence[str], cpus: int | None = None) -> int:
    """Trial processes at once: with GPUs, as many as the smallest net of the sweep packs onto them all; without,
    one per core up to ``MAX_CPU_WORKERS``."""
    if gpus:
        return len(gpus) * max(trials_per_gpu(c) for c in configs)
    return max(1, min(cpus or os.cpu_count() or 1, MAX_CPU_WORKERS))


def threads_per_trial(workers: int, cpus: int | None = None) -> int:
    return max(1, (cpus or os.cpu_count() or 1) // workers)


class GpuSlots:
    """The units free on each GPU; ``take`` blocks until a GPU has room for a trial's net."""

    def __init__(self, gpus: Sequence[str]) -> None:
        self.free = {gpu: UNITS for gpu in gpus}
        self.changed = threading.Condition()

    def take(self, config: Any, stop: Callable[[], bool] | threading.Event | None = None) -> str | None:
        """The GPU the trial of ``config`` runs on, its units taken; None without GPUs or once ``stop`` says so."""
        stopped = stop.is_set if isinstance(stop, threading.Event) else stop
        if not self.free:
            return None
        units = UNITS // trials_per_gpu(config)
        with self.changed:
            while True:
                gpu = max(self.free, key=lambda g: self.free[g])  # the least loaded: trials spread across GPUs
                if self.free[gpu] >= units:
                    self.free[gpu] -= units
                    return gpu
                if stopped is not None and stopped():
                    return None
                self.changed.wait(timeout=1)

    def give_back(self, gpu: str | None, config: Any) -> None:
        if gpu is None:
            return
        with self.changed:
            self.free[gpu] += UNITS // trials_per_gpu(config)
            self.changed.notify_all()


def trial_environment(gpu: str | None) -> dict[str, str]:
    """What a trial process sets before CUDA starts: only its GPU visible (none without GPUs: the CPU)."""
    return {} if gpu is None else {"CUDA_VISIBLE_DEVICES": gpu}
