"""ImageNet-style data in torchvision's ``ImageFolder`` layout, with the paper's ImageNet augmentation.

``data_dir/train/CLASS/*.jpg`` and ``data_dir/val/CLASS/*.jpg`` (ImageNet, Imagenette, a user's own).
The ``val`` folder is what He 2015 reports on, so it is our *test* split; our *val* split (model
selection, plateau detection) is ``data.val_size`` images held out of ``train`` with ``data.split_seed``.

ImageNet does not fit on a GPU as tensors, so unlike ``lab.data`` this is a real input pipeline: a
torch ``DataLoader`` whose worker processes decode, resize and crop each image into a uint8 tensor;
pinned memory; mean subtraction and scaling happen on the training device (``lab.train.datamodules``).

Exact resume: training batch ``i`` is a function of ``(seed, i)`` only. ``SeededBatches`` draws each
pass's permutation from ``(seed, pass)`` (as ``lab.data.tensors.TrainStream`` does) and hands every image an
augmentation seed derived from ``(seed, i, position)``, so neither the number of workers nor the
iteration a run was resumed at changes what a batch holds.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from lab.config import ConfigError, DataConfig
from lab.data.seeding import seed_for

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
IMAGENET_CLASSES = 1000  # when data_dir/train is absent (e.g. `lab sweep --dry-run` on a machine without the data)
# One worker decodes about 250 ImageNet-sized images/s (python -m lab.bench on an H200 machine's 16 cores: 2,000
# images/s with 8 workers, 3,900 with 15) and ResNet-34 trains at about 3,500 images/s on that GPU: use the cores.
MAX_DEFAULT_WORKERS = 32
DEFAULT_VAL_SIZE, DEFAULT_VAL_FRACTION = 10_000, 0.1  # ImageNet: 10 images per class; Imagenette: 947 of 9,469


def _layout(root: Path) -> str:
    return f"expected {root}/train/CLASS/*.jpg and {root}/val/CLASS/*.jpg (torchvision's ImageFolder layout)"


def class_names(folder: Path) -> list[str]:
    """The class folders of ``folder``, sorted as torchvision's ``ImageFolder`` sorts them."""
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def default_workers() -> int:
    """``min(32, cores - 1)``: one core is left to the training process (which feeds the GPU)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(MAX_DEFAULT_WORKERS, cores - 1))


def imagefolder_shape(cfg: DataConfig) -> tuple[int, int, int, int]:
    """``(channels, height, width, num_classes)`` of the net's input, without decoding any image.

    ``num_classes`` counts the class folders of ``data_dir/train`` when it exists, else ImageNet's 1,000.
    """
    train = Path(cfg.data_dir or "data").expanduser() / "train"
    num_classes = len(class_names(train)) if train.is_dir() else IMAGENET_CLASSES
    return 3, cfg.crop, cfg.crop, num_classes


@dataclass(frozen=True)
class Files:
    """Image paths and labels of one split.

    numpy arrays, not Python lists: a list of a million str objects is copied page by page into every
    worker process as reference counts touch it (pytorch/pytorch#13246); an array is one object.
    """

    paths: np.ndarray  # bytes (numpy "S"), one per image
    labels: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: torch.Tensor | np.ndarray) -> "Files":
        index = np.asarray(index)
        return Files(self.paths[index], self.labels[index])


def scan(folder: Path, classes: list[str]) -> Files:
    """Every image under ``folder/CLASS/`` (recursively, sorted), labelled by its class's index in ``classes``."""
    paths, labels = [], []
    for label, name in enumerate(classes):
        for dirpath, dirnames, filenames in sorted(os.walk(folder / name, followlinks=True)):
            dirnames.sort()
            for f in sorted(filenames):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(dirpath, f))
                    labels.append(label)
    return Files(np.array(paths, dtype=np.bytes_), np.array(labels, dtype=np.int64))


@dataclass
class ImageFolderData:
    """The three splits as file lists; images are decoded only when a batch is drawn."""

    train: Files
    val: Files  # held out of data_dir/train
    test: Files  # data_dir/val
    classes: list[str]
    in_channels: int = 3  # every image is converted to RGB

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_imagefolder(cfg: DataConfig) -> ImageFolderData:
    """Scan ``data_dir`` and split ``val_size`` training images off (fixed by ``split_seed``) as the val split."""
    root = Path(cfg.data_dir or "data").expanduser()
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise ConfigError(f"data.data_dir: no ImageFolder at {root}: {_layout(root)}")
    classes = class_names(root / "train")
    test_classes = class_names(root / "val")
    if not set(test_classes) <= set(classes):
        extra = sorted(set(test_classes) - set(classes))[:3]
        raise ConfigError(f"data.data_dir: {root}/val has classes that {root}/train lacks ({', '.join(extra)}, ...)")
    train_all, test = scan(root / "train", classes), scan(root / "val", classes)
    for split, files in (("train", train_all), ("val", test)):
        if len(files) == 0:
            raise ConfigError(f"data.data_dir: no images in {root}/{split}: {_layout(root)}")
    val_size = cfg.val_size or min(DEFAULT_VAL_SIZE, round(DEFAULT_VAL_FRACTION * len(train_all)))
    if not 0 < val_size < len(train_all):
        raise ConfigError(f"data.val_size: {val_size} must be between 1 and {len(train_all) - 1} for {root}/train")
    perm = torch.randperm(len(train_all), generator=torch.Generator().manual_seed(cfg.split_seed))
    train, val = train_all.take(perm[val_size:].sort().values), train_all.take(perm[:val_size].sort().values)
    return ImageFolderData(train, val, test, classes)


# --- one image: decode, resize the shorter side, crop (He 2015, Section 3.4) ---


def resized_size(width: int, height: int, shorter: int) -> tuple[int, int]:
    """The size after resizing the shorter side to ``shorter``; the longer side is truncated like torchvision's Resize."""
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


def load_view(path: str, shorter: int, crop: int, rng: np.random.Generator | None, flip: bool = False) -> torch.Tensor:
    """A ``crop`` x ``crop`` window of the image at ``path`` resized so that its shorter side is ``shorter``.

    ``rng`` None: the center window (evaluation); else a random window and, with ``flip``, a random mirror.
    Only the window is resampled (PIL's ``resize(box=...)`` gives the same pixels as resizing the whole
    image and cropping it, with a fraction of the work), and JPEGs much larger than needed are decoded at
    1/2, 1/4 or 1/8 scale (``draft``), which is most of the cost of large photos.

    Returns:
        uint8 tensor of shape 3 x crop x crop.
    """
    with Image.open(path) as img:
        tw, th = resized_size(*img.size, shorter)
        if rng is None:  # torchvision's CenterCrop rounding
            left, top = int(round((tw - crop) / 2.0)), int(round((th - crop) / 2.0))
        else:
            left, top = int(rng.integers(0, tw - crop + 1)), int(rng.integers(0, th - crop + 1))
        drafted = img.draft("RGB", (tw, th))
        fw, fh = (drafted[1][2], drafted[1][3]) if drafted else img.size  # full extent in decoded pixels
        img = img.convert("RGB")
        sx, sy = fw / tw, fh / th
        box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
        out = img.resize((crop, crop), Image.Resampling.BILINEAR, box=box)
    if flip and rng is not None and rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return torch.from_numpy(np.ascontiguousarray(np.asarray(out).transpose(2, 0, 1)))  # 4x faster than torch's permute


@dataclass(frozen=True)
class TrainView:
    """Section 3.4: shorter side resized at random in [scale[0], scale[1]], a random crop, a random flip."""

    scale: tuple[int, int]
    crop: int
    flip: bool

    def __call__(self, path: str, rng: np.random.Generator) -> torch.Tensor:
        shorter = int(rng.integers(self.scale[0], self.scale[1] + 1))
        return load_view(path, shorter, self.crop, rng, self.flip)


@dataclass(frozen=True)
class EvalView:
    """Shorter side resized to ``resize``, the center crop. Single-crop: the paper's Table 3 numbers are 10-crop."""

    resize: int
    crop: int

    def __call__(self, path: str, rng: None = None) -> torch.Tensor:
        return load_view(path, self.resize, self.crop, None)


class ImageFiles(Dataset):
    """Decodes one image per item, in a DataLoader worker.

    An item is an index (evaluation: the center view) or ``(index, seed, position)`` from
    ``SeededBatches`` (training: a random view drawn from its own generator, so that the view does not
    depend on which worker draws it or on what that worker drew before).
    """

    def __init__(self, files: Files, view: TrainView | EvalView) -> None:
        self.files, self.view = files, view

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: int | tuple[int, int, int]) -> tuple[torch.Tensor, int]:
        index, rng = (item[0], np.random.default_rng(item[1:])) if isinstance(item, tuple) else (item, None)
        path = self.files.paths[index].decode()
        return self.view(path, rng), int(self.files.labels[index])


class SeededBatches:
    """Endless training batches of ``(index, seed, position)`` items; batch ``i`` depends only on ``(seed, i)``.

    Each pass is a permutation drawn from ``(seed, pass)`` and drops its last partial batch, so every
    iteration sees ``batch_size`` images as the paper's iteration counts assume (as ``TrainStream``).
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: Callable[[], int] = lambda: 0) -> None:
        if n < batch_size:
            raise ConfigError(f"optim.batch_size: {batch_size} is larger than the {n} training images")
        self.n, self.batch_size, self.seed, self.start = n, batch_size, seed, start
        self.per_pass = n // batch_size
        self._pass, self._order = -1, torch.empty(0, dtype=torch.int64)

    def batch(self, i: int) -> list[tuple[int, int, int]]:
        n_pass, k = divmod(i, self.per_pass)
        if n_pass != self._pass:
            generator = torch.Generator().manual_seed(seed_for(self.seed, 0, n_pass))
            self._pass, self._order = n_pass, torch.randperm(self.n, generator=generator)
        idx = self._order[k * self.batch_size : (k + 1) * self.batch_size].tolist()
        draw = seed_for(self.seed, 1, i)
        return [(index, draw, position) for position, index in enumerate(idx)]

    def __iter__(self):
        i = self.start()  # read when the DataLoader's iterator is made: after a checkpoint is restored
        while True:
            yield self.batch(i)
            i += 1


def _loader_options(cfg: DataConfig, pin_memory: bool) -> dict:
    # DataLoader's default of 2 batches in flight per worker: 15 workers already hold 1.2 GB of 256 x 224^2
    # batches in shared memory, and a worker always has its next batch to work on.
    return dict(num_workers=default_workers() if cfg.workers is None else cfg.workers, pin_memory=pin_memory)


def train_loader(
    files: Files, cfg: DataConfig, batch_size: int, seed: int, start: Callable[[], int] = lambda: 0, pin_memory: bool = False
) -> DataLoader:
    """The training pipeline: uint8 batches ``(B x 3 x crop x crop, B)``; batch ``i`` a function of ``(seed, i)``."""
    view = TrainView((cfg.scale[0], cfg.scale[1]), cfg.crop, cfg.flip)
    sampler = SeededBatches(len(files), batch_size, seed, start)
    return DataLoader(ImageFiles(files, view), batch_sampler=sampler, **_loader_options(cfg, pin_memory))


def eval_loader(files: Files, cfg: DataConfig, batch_size: int, pin_memory: bool = False, persistent: bool = True) -> DataLoader:
    """Every image of a split once, in order, as its center view."""
    options = _loader_options(cfg, pin_memory)
    return DataLoader(
        ImageFiles(files, EvalView(cfg.eval_resize, cfg.crop)),
        batch_size=batch_size,
        persistent_workers=persistent and options["num_workers"] > 0,  # used every eval_every iterations: keep them
        **options,
    )


def mean_image(files: Files, cfg: DataConfig, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-pixel mean image (Section 3.4) and the per-channel spread around it, in uint8 units.

    Computed from the center views of a seeded sample of ``cfg.mean_images`` training images (the mean
    of all 1.28M ImageNet images differs from it by far less than one grey level), summed in float64 in
    a fixed order: the same numbers with any number of workers, so a resumed run recomputes it exactly.

    Returns:
        ``(mean, std)``: float32 tensors of shapes 3 x crop x crop and 3.
    """
    perm = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed_for(cfg.split_seed, 2, 0)))
    sample = perm[: cfg.mean_images].sort().values
    loader = eval_loader(files.take(sample), cfg, batch_size, persistent=False)
    total = torch.zeros(3, cfg.crop, cfg.crop, dtype=torch.float64)
    squares = torch.zeros_like(total)
    for x, _ in loader:
        x = x.double()
        total += x.sum(0)
        squares += (x * x).sum(0)
    mean = total / len(sample)
    # The spread that is left after mean subtraction: scaling by it gives the first conv unit-variance input.
    std = (squares / len(sample) - mean * mean).clamp_min(0).mean((1, 2)).sqrt().clamp_min(1e-3)
    return mean.float(), std.float()
