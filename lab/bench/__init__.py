"""``lab bench`` (``lab.bench.training``, ``lab.bench.first_study``): lab's training path side by side with the way public reproductions train, and the floor; and
(``python -m lab.bench``) the throughput of the ImageFolder training pipeline for several worker counts.

    lab bench [--quick | --gpu-check] [--out FILE.json]    (run_bench; the README's "Fast training")
    python -m lab.bench [DIR] [--workers 0,1,2,4,8] [--batches 20] [--batch-size 256]

DIR is a folder in ImageFolder layout (its ``train/`` is read); without one, a synthetic ImageNet-like
folder (500x375 JPEGs of about ImageNet's file size) is generated in a temporary folder. Each worker
count runs the real training loader (random-resized 224 crops and flips, He 2015 Section 3.4) for
``--batches`` batches; with a GPU the batches are also pinned, copied and normalised there, as in
training. Only torch, torchvision's dependencies (PIL) and numpy are needed.
"""
from __future__ import annotations

from lab.bench.first_study import run_first_study  # noqa: F401
from lab.bench.training import bench_plan, project_table6, run_bench  # noqa: F401
