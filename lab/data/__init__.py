"""A run's data. ``lab.data.tensors``: digits and CIFAR held as tensors on the training device, batched and augmented
there; ``lab.data.imagefolder``: ImageFolder datasets through DataLoader workers; ``lab.data.seeding``: the seeds
of every draw. The tensor datasets' names are re-exported here (``from lab.data import load_dataset``).
"""
from __future__ import annotations

from lab.config import DataConfig
from lab.data.tensors import (  # noqa: F401
    TENSOR_SHAPES, Dataset, EvalBatches, Split, TrainStream, augment, load_cifar, load_dataset, load_digits,
)


def input_shape(cfg: DataConfig) -> tuple[int, int, int, int]:
    """(channels, height, width, classes) of what the net sees, without reading any image (for ``--dry-run``)."""
    if cfg.name in TENSOR_SHAPES:
        return TENSOR_SHAPES[cfg.name]
    from lab.data.imagefolder import imagefolder_shape

    return imagefolder_shape(cfg)
