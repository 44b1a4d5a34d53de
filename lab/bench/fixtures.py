"""Datasets generated in their real on-disk formats, for ``lab bench`` and the tests (nothing is downloaded here).

``write_cifar10``: a CIFAR-10 archive as torchvision reads it (``cifar-10-batches-py/``: pickled batches with
``data``, N x 3072 uint8 in channel planes, and ``labels``; ``batches.meta`` with ``label_names``).
``make_imagefolder``: an ImageFolder of photo-like JPEGs of ImageNet's most common size.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root: Path, n_train: int, n_test: int, seed: int = 0, label_pixels: bool = False) -> Path:
    """``root/cifar-10-batches-py/``, ``n_train`` images over the five training batches and ``n_test`` in the test
    batch; returns ``root`` (a ``data.data_dir``). Pixels are random (decoding costs the same for any), or with
    ``label_pixels`` encode label and channel (``20 * label + channel``), so that a test can check that images
    and labels stay together."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def batch(n: int) -> dict:
        if label_pixels:
            labels = rng.integers(0, 10, n)
            data = np.repeat((20 * labels[:, None] + np.arange(3)[None, :]).astype(np.uint8), 1024, axis=1)
        else:
            data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            labels = rng.integers(0, 10, n)
        return {"batch_label": "generated", "labels": labels.tolist(), "data": data, "filenames": [""] * n}

    for i, n in enumerate((n_train // 5 + (i < n_train % 5) for i in range(5)), 1):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(n)))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(n_test)))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR10_NAMES, "num_vis": 3072}))
    return Path(root)


IMAGENET_LIKE_SIZE = (500, 375)  # ImageNet's most common image size (W x H); its JPEGs average about 110 KB


def make_imagefolder(root: Path, classes: int = 4, per_class: int = 64, size: tuple[int, int] = IMAGENET_LIKE_SIZE) -> Path:
    """Write ``root/train/CLASS/*.jpg`` (and a one-image-per-class ``val/``) of photo-like JPEGs.

    Smooth random shapes plus sensor-like noise, saved at quality 90: about the entropy, and so the
    decode cost, of a photograph (pure noise would decode slower, flat colour much faster).
    """
    rng = np.random.default_rng(0)
    w, h = size
    for split, n in (("train", per_class), ("val", 1)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
                pixels = np.asarray(coarse, dtype=np.int16) + rng.normal(0, 12, (h, w, 3)).astype(np.int16)
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i:05d}.JPEG", quality=90)
    return root
