"""``lab sweep NAME --dry-run``: every trial, its net's size and multiply-adds, and the wall time a few timed steps
project; the cost model (``training_cost``) the live ETA uses too (``lab.progress``)."""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

from lab.sweep import packing
from lab.config import Config
from lab.sweep.spec import SweepSpec, planned_trials

def net_size(config: Config, cache: dict[tuple, tuple[int, int]]) -> tuple[int, int]:
    """(parameters, multiply-adds per image) of a config's net, counted on the meta device (no memory, no
    initialisation, even for ResNet-152); ``cache`` keeps them per distinct net."""
    import torch

    from lab import nets
    from lab.data import input_shape

    m, (channels, height, width, classes) = config.model, input_shape(config.data)
    key = (*m.model_dump().values(), channels, height, width, classes)
    if key not in cache:
        with torch.device("meta"):
            net = nets.build_net(nets.NetConfig.of(m, channels, classes))
            cache[key] = nets.count_params(net), nets.multiply_adds(net, (channels, height, width))
    return cache[key]


def training_cost(config: Config, cache: dict[tuple, tuple[int, int]]) -> float:
    """Multiply-adds of a whole training run: a step costs about 3 forward passes (forward, and backward for
    inputs and weights) of every image of the batch."""
    return 3.0 * net_size(config, cache)[1] * config.optim.batch_size * config.optim.max_steps


TIMED_STEP_MAX_MACS = 5e10  # a training step costlier than this (ImageNet nets, say) is not timed on the CPU


def timeable(config: Config, cache: dict[tuple, tuple[int, int]]) -> bool:
    """Whether ``step_seconds`` can time a config here: no GPU would train it, and a step is cheap enough for the CPU."""
    return not packing.visible_gpus() and training_cost(config, cache) / config.optim.max_steps <= TIMED_STEP_MAX_MACS


def step_seconds(config: Config, threads: int) -> float:
    """Seconds of one training step of ``config``'s net here (forward, backward, SGD on a batch of random images
    of the recipe's size), the fastest of 2 after a warm-up one, on ``threads`` CPU threads (``timeable`` first)."""
    import torch
    import torch.nn.functional as F

    from lab import nets
    from lab.data import input_shape

    channels, height, width, classes = input_shape(config.data)
    m, batch = config.model, config.optim.batch_size
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        net = nets.build_net(nets.NetConfig.of(m, channels, classes))
        optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        x, y = torch.randn(batch, channels, height, width), torch.randint(classes, (batch,))
        times = []
        for _ in range(3):
            start = time.perf_counter()
            optimizer.zero_grad()
            F.cross_entropy(net(x), y).backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
        return min(times[1:])
    finally:
        torch.set_num_threads(before)


def dry_run(name: str, spec: SweepSpec, recipe: dict[str, Any], overrides: dict[str, Any], out=None,
            workers: int = 1) -> None:
    """Print every trial the sweep would run with its net's size and cost, and the totals, and an estimate of its
    wall time with ``workers`` trials at once (training steps timed here); runs no trial and writes nothing."""
    out = out or sys.stdout  # at call time: the stdout of now (a test's capture, a redirect)
    from lab.data import input_shape

    trials = planned_trials(spec, recipe, overrides)
    cost: dict[tuple, tuple[int, int]] = {}
    rows, total_macs = [], 0.0
    for run, config in trials:
        params, macs = net_size(config, cost)
        _, height, width, _ = input_shape(config.data)
        o = config.optim
        total_macs += training_cost(config, cost)
        rows.append((run, f"{params:,}", _si(macs), f"{height}x{width}", f"{o.max_steps:,}", str(o.batch_size)))
    header = ("run", "params", "mult-adds/image", "input", "iterations", "batch")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"[{name}] dry run: {_plural(len(trials), 'trial')}; nothing is run or written", file=out)
    for row in [header, *rows]:
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))), file=out)
    absent = sorted({c.data.data_dir for _, c in trials if c.data.name == "imagefolder" and not (Path(c.data.data_dir) / "train").is_dir()})
    if absent:  # imagefolder_shape falls back to ImageNet's classes; say so rather than count silently
        print(f"[{name}] no {', '.join(absent)}/train here: counted with ImageNet's 1,000 classes", file=out)
    searched = f"; searched ({', '.join(spec.search)}) shown at their lower bounds" if spec.search else ""
    print(f"[{name}] total: {_plural(len(trials), 'trial')}, {_plural(len(cost), 'distinct net')}, "
          f"{_si(total_macs)} multiply-adds of training (about 3x forward per image){searched}", file=out)
    from lab.progress import duration

    untimed = next((config for _, config in trials if not timeable(config, cost)), None)
    if untimed is not None:
        print(f"[{name}] no time estimate: {untimed.run_name} would train on a GPU or is too large to time on "
              f"the CPU; the sweep shows its ETA once its first trials run", file=out)
        return
    threads = packing.threads_per_trial(workers)
    timed: dict[tuple, float] = {}  # seconds per step of each distinct net and batch
    seconds = 0.0
    for _, config in trials:
        key = (*config.model.model_dump().values(), config.optim.batch_size, config.data.name)
        if key not in timed:
            timed[key] = step_seconds(config, threads)
        seconds += timed[key] * config.optim.max_steps
    print(f"[{name}] estimated: about {duration(seconds / min(workers, len(trials)))} of training with {workers} "
          f"worker{'s' * (workers != 1)} ({threads} thread{'s' * (threads != 1)} each; training steps timed here, "
          f"evaluations and start-up not counted); `lab sweep {shlex.quote(name)}` shows its ETA as it runs", file=out)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _si(n: float) -> str:
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"
