"""``python -m lab.bench [DIR]``: the throughput of the ImageFolder training pipeline for several DataLoader worker
counts (the real training loader; random-resized 224 crops and flips, He 2015 Section 3.4)."""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from lab.config import DataConfig
from lab.data.imagefolder import class_names, default_workers, scan, train_loader
from lab.bench.fixtures import IMAGENET_LIKE_SIZE, make_imagefolder

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
        cfg = DataConfig(name="imagefolder", data_dir=str(data_dir), scale=list(scale), crop=crop, flip=True, workers=workers)
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
