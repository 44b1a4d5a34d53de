"""Throughput of the ImageFolder training pipeline (``lab.imagefolder``) for several worker counts, side by side.

    python -m lab.bench [DIR] [--workers 0,1,2,4,8] [--batches 20] [--batch-size 256]

DIR is a folder in ImageFolder layout (its ``train/`` is read); without one, a synthetic ImageNet-like
folder (500x375 JPEGs of about ImageNet's file size) is generated in a temporary folder. Each worker
count runs the real training loader (random-resized 224 crops and flips, He 2015 Section 3.4) for
``--batches`` batches; with a GPU the batches are also pinned, copied and normalised there, as in
training. Only torch, torchvision's dependencies (PIL) and numpy are needed.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lab.config import DataConfig
from lab.imagefolder import class_names, default_workers, scan, train_loader

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


def measure_imagefolder(
    data_dir: str | Path,
    workers_list: list[int],
    batches: int,
    batch_size: int = 256,
    crop: int = 224,
    scale: tuple[int, int] = (256, 480),
    device: str | None = None,
) -> list[dict[str, float]]:
    """Images/s of the training pipeline on ``data_dir/train`` for each number of workers.

    Args:
        workers_list: DataLoader worker counts to compare (0: decode in this process).
        batches: batches timed per worker count (rounded up to whole rounds of one batch per worker), after
            the first round (whose wait is reported as ``startup_s``).
        device: where batches go (``cuda``: pinned, copied and normalised there); default: cuda if available.

    Returns:
        One row per worker count: ``workers``, ``images_per_s``, ``startup_s``, ``ratio`` (vs the first row).
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    root = Path(data_dir) / "train"
    files = scan(root, class_names(root))
    rows = []
    for workers in workers_list:
        cfg = DataConfig("imagefolder", data_dir=str(data_dir), scale=list(scale), crop=crop, flip=True, workers=workers)
        loader = train_loader(files, cfg, batch_size, seed=0, pin_memory=device.startswith("cuda"))
        # Each worker builds whole batches, so they arrive in rounds of `workers`: the clock starts when the
        # first round is in and stops after whole rounds (else 15 workers' first 15 batches, ready at once,
        # would count as if made in no time).
        per_round = max(workers, 1)
        timed = -(-batches // per_round) * per_round
        start = time.perf_counter()
        it = iter(loader)
        for n in range(per_round + timed):
            x, y = next(it)
            x = x.to(device, non_blocking=True).float().sub_(128.0)  # what training does next with a batch
            if n == per_round - 1:
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                first = time.perf_counter()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - first
        del it  # shuts the workers down before the next setting starts its own
        rows.append({"workers": workers, "images_per_s": timed * batch_size / elapsed, "startup_s": first - start})
    for row in rows:
        row["ratio"] = row["images_per_s"] / rows[0]["images_per_s"]
    return rows


def _print_rows(rows: list[dict[str, float]], what: str) -> None:
    print(what)
    print(f"{'workers':>8} {'images/s':>10} {'x vs ' + str(rows[0]['workers']):>9} {'startup s':>10}")
    for r in rows:
        print(f"{r['workers']:>8} {r['images_per_s']:>10.1f} {r['ratio']:>9.2f} {r['startup_s']:>10.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.bench", description=__doc__.split("\n")[0])
    p.add_argument("data_dir", nargs="?", help="an ImageFolder (train/CLASS/*.jpg); default: a generated one")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    default = sorted({0, 1, 2, 4, 8, default_workers()} & set(range(cores + 1)))
    p.add_argument("--workers", default=",".join(map(str, default)), help=f"comma-separated worker counts (default: {default})")
    p.add_argument("--batches", type=int, default=20, help="batches timed per worker count (default: 20)")
    p.add_argument("--batch-size", type=int, default=256, help="images per batch (default: 256, the paper's)")
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--device", help="cpu | cuda (default: cuda if available)")
    args = p.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or make_imagefolder(Path(tmp))
        rows = measure_imagefolder(data_dir, workers, args.batches, args.batch_size, args.crop, device=args.device)
        source = args.data_dir or f"a generated ImageFolder ({IMAGENET_LIKE_SIZE[0]}x{IMAGENET_LIKE_SIZE[1]} JPEGs, in page cache)"
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        _print_rows(rows, f"training pipeline on {source}: batch {args.batch_size}, crop {args.crop}, {args.batches} batches "
                          f"per setting, to {device}; {cores} CPU cores, {platform.processor() or platform.machine()}, "
                          f"torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
