"""Datasets held as uint8 tensors on the training device, batched and augmented there.

No per-sample Python transforms and no DataLoader workers: with 2 CPU cores,
worker processes compete with the training step for the same cores, and on a
GPU the whole of CIFAR-10 (150 MB as uint8) fits beside the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from lab.config import ConfigError, DataConfig
from lab.data.seeding import seed_for

CIFAR_VAL_SIZE = 5_000  # He 2015, Section 4.2: a 45k/5k train/val split
DIGITS_TEST_FRACTION, DIGITS_VAL_FRACTION = 0.2, 0.1


@dataclass
class Split:
    x: torch.Tensor  # uint8, N x C x H x W
    y: torch.Tensor  # int64, N

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device) -> "Split":
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split
    num_classes: int
    mean: torch.Tensor  # per channel, in uint8 units, from the training split
    std: torch.Tensor

    @property
    def in_channels(self) -> int:
        return self.train.x.shape[1]

    def to(self, device: torch.device) -> "Dataset":
        return Dataset(
            self.train.to(device), self.val.to(device), self.test.to(device),
            self.num_classes, self.mean.to(device), self.std.to(device),
        )


def _hold_out(split: Split, size: int, seed: int) -> tuple[Split, Split]:
    """Split off ``size`` images at random (fixed by ``seed``): (rest, held out)."""
    if not 0 < size < len(split):
        raise ConfigError(f"data.val_size: {size} must be between 1 and {len(split) - 1} for this dataset")
    perm = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    rest, held = perm[size:].sort().values, perm[:size].sort().values
    return Split(split.x[rest], split.y[rest]), Split(split.x[held], split.y[held])


def _dataset(train: Split, val: Split, test: Split, num_classes: int) -> Dataset:
    pixels = train.x.transpose(0, 1).reshape(train.x.shape[1], -1).float()
    mean, std = pixels.mean(1), pixels.std(1).clamp_min(1e-3)
    return Dataset(train, val, test, num_classes, mean, std)


def load_digits(cfg: DataConfig) -> Dataset:
    """scikit-learn's bundled 1,797 real 8x8 handwritten digits (values 0..16); a seeded train/val/test split."""
    from sklearn.datasets import load_digits as sk_load_digits

    images, labels = sk_load_digits(return_X_y=True)
    x = torch.from_numpy(images.astype(np.uint8).reshape(-1, 1, 8, 8))
    everything = Split(x, torch.from_numpy(labels.astype(np.int64)))
    n_test = round(DIGITS_TEST_FRACTION * len(everything))
    trainval, test = _hold_out(everything, n_test, cfg.split_seed)
    val_size = cfg.val_size or round(DIGITS_VAL_FRACTION * len(everything))
    train, val = _hold_out(trainval, val_size, cfg.split_seed + 1)
    return _dataset(train, val, test, num_classes=10)


def _cifar_class(name: str, verify: bool):
    from torchvision import datasets

    base = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    if verify:
        return base
    # torchvision checks the MD5 of every file; archives built by the tests carry other bytes.
    return type(
        f"Unverified{base.__name__}",
        (base,),
        {
            "train_list": [[f, None] for f, _ in base.train_list],
            "test_list": [[f, None] for f, _ in base.test_list],
            "meta": {**base.meta, "md5": None},
        },
    )


def load_cifar(cfg: DataConfig) -> Dataset:
    """CIFAR-10/100 through torchvision: the standard extracted archive in ``data_dir``, or a download."""
    root = Path(cfg.data_dir or "data").expanduser()
    cls = _cifar_class(cfg.name, cfg.verify_md5)
    try:
        parts = [cls(root=str(root), train=train, download=cfg.download) for train in (True, False)]
    except RuntimeError as e:
        raise ConfigError(
            f"data.data_dir: no usable {cfg.name} archive under {root} ({e}); point data.data_dir at the folder "
            f"holding {cls.base_folder}/, or set data.download=true on a machine with network"
        ) from None
    train_all, test = (
        Split(torch.from_numpy(p.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(p.targets)) for p in parts
    )
    train, val = _hold_out(train_all, cfg.val_size or CIFAR_VAL_SIZE, cfg.split_seed)
    return _dataset(train, val, test, num_classes=len(parts[0].classes))


def load_dataset(cfg: DataConfig) -> Dataset:
    return load_digits(cfg) if cfg.name == "digits" else load_cifar(cfg)


# (channels, height, width, classes) of the datasets held as tensors, known without loading them
TENSOR_SHAPES = {"digits": (1, 8, 8, 10), "cifar10": (3, 32, 32, 10), "cifar100": (3, 32, 32, 100)}



def augment(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Pad-and-random-crop and horizontal flips for a whole batch at once, on its device."""
    n, c, h, w = x.shape
    if pad:
        padded = F.pad(x, (pad, pad, pad, pad))
        dy, dx = torch.randint(0, 2 * pad + 1, (2, n, 1), device=x.device, generator=generator)
        rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]
        x = padded[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[:, None, None], rows, cols]
    if flip:
        mirror = torch.rand(n, device=x.device, generator=generator) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(3), x)
    return x


class EvalBatches:
    """Every image of a split once, in order, normalised; no augmentation."""

    def __init__(self, split: Split, mean: torch.Tensor, std: torch.Tensor, batch_size: int) -> None:
        self.split, self.batch_size = split, batch_size
        self.mean, self.std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def __iter__(self):
        for i in range(0, len(self.split), self.batch_size):
            x = self.split.x[i : i + self.batch_size]
            yield (x.float() - self.mean) / self.std, self.split.y[i : i + self.batch_size]


class TrainStream:
    """An endless stream of shuffled, augmented, normalised training batches; batch ``i`` depends only on ``(seed, i)``.

    Each pass over the training images is a permutation drawn from the seed and the pass number and
    drops its last partial batch, so that every iteration sees ``batch_size`` images as the paper's
    iteration counts assume; batch ``i``'s augmentation is drawn from the seed and ``i``. A run resumed
    at iteration ``k`` (``start() == k``) therefore sees exactly the batches it would have seen.
    """

    def __init__(
        self,
        split: Split,
        mean: torch.Tensor,
        std: torch.Tensor,
        batch_size: int,
        seed: int,
        pad: int = 0,
        flip: bool = False,
        start: Callable[[], int] = lambda: 0,
    ) -> None:
        if len(split) < batch_size:
            raise ConfigError(f"optim.batch_size: {batch_size} is larger than the {len(split)} training images")
        self.split, self.batch_size, self.seed, self.pad, self.flip, self.start = split, batch_size, seed, pad, flip, start
        self.mean, self.std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
        self.per_pass = len(split) // batch_size
        self.generator = torch.Generator(device=split.y.device)
        self._pass, self._order = -1, None

    def batch(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        n_pass, k = divmod(i, self.per_pass)
        if n_pass != self._pass:
            self.generator.manual_seed(seed_for(self.seed, 0, n_pass))
            self._order = torch.randperm(len(self.split), device=self.split.y.device, generator=self.generator)
            self._pass = n_pass
        idx = self._order[k * self.batch_size : (k + 1) * self.batch_size]
        self.generator.manual_seed(seed_for(self.seed, 1, i))
        x = augment(self.split.x[idx], self.pad, self.flip, self.generator)
        return (x.float() - self.mean) / self.std, self.split.y[idx]

    def __iter__(self):
        i = self.start()  # read when the first batch is asked for: after a checkpoint is restored
        while True:
            yield self.batch(i)
            i += 1
