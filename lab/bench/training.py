"""``lab bench``: lab's training path side by side with the way public reproductions train, and the floor."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from lab.bench.fixtures import write_cifar10
from lab.records import RunRecord, read_json

PAPER_STEPS = 64_000  # He 2015, Section 4.2: a CIFAR-10 run
TABLE6_DEPTHS = {"plain": (20, 32, 44, 56), "resnet": (20, 32, 44, 56, 110)}  # one seed of Table 6's sweep: 9 nets
GPU_CHECK_BUDGET_S = 270  # --gpu-check skips what is left past this (its promise: under 5 minutes on an H200)


@dataclass
class BenchPlan:
    """What one ``lab bench`` run measures; ``--quick``, the default and ``--gpu-check`` are three of these."""

    depths: tuple[int, ...]
    steps: dict[int, int]  # timed iterations per depth (after `warmup`)
    warmup: int
    variants: dict[int, tuple[str, ...]]  # per depth: "PRECISION" or "PRECISION+compile" for lab's path and the floor
    train_images: int  # generated CIFAR-format training images (+ a tenth as test images)
    loader_workers: int  # the DataLoader loop's worker processes
    data_batches: int  # batches timed in the data-path section
    sweep_depth: int
    sweep_variant: str
    sweep_steps: int
    sweep_workers: int  # N of "1 vs N workers"
    sweep_serial_trials: int = 2  # trials of the 1-worker phase
    batch_size: int = 128
    budget_s: float | None = None


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def bench_plan(mode: str, device: str) -> BenchPlan:
    cuda = device.startswith("cuda")
    cores = _cores()
    if mode == "quick":  # CI: seconds to a minute on 2 cores; sane values, not figures
        return BenchPlan(depths=(8,), steps={8: 8}, warmup=2, variants={8: ("32",)}, train_images=1280,
                         loader_workers=min(2, cores), data_batches=5, sweep_depth=8, sweep_variant="32", sweep_steps=5,
                         sweep_workers=2, sweep_serial_trials=1)
    if mode == "gpu-check":  # the protocol for a GPU: ResNet-56 in every variant, 20 and 110 fast and slow
        fast = ("32", "bf16-mixed+compile")
        return BenchPlan(depths=(20, 56, 110), steps={20: 400, 56: 300, 110: 150}, warmup=30,
                         variants={20: fast, 56: ("32", "32+compile", "bf16-mixed", "bf16-mixed+compile"), 110: fast},
                         train_images=20_000, loader_workers=min(4, cores), data_batches=100, sweep_depth=56,
                         sweep_variant="bf16-mixed+compile", sweep_steps=300, sweep_workers=4, budget_s=GPU_CHECK_BUDGET_S)
    # the default: the three nets of the issue, as they are trained here
    return BenchPlan(depths=(20, 56, 110), steps={20: 200, 56: 100, 110: 50} if cuda else {20: 20, 56: 8, 110: 4},
                     warmup=20 if cuda else 2, variants={d: ("32",) for d in (20, 56, 110)}, train_images=10_000,
                     loader_workers=min(4, cores), data_batches=50 if cuda else 20, sweep_depth=20, sweep_variant="32",
                     sweep_steps=100 if cuda else 10, sweep_workers=4 if cuda else min(cores, 8))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _split_variant(variant: str) -> tuple[str, bool]:
    precision, _, extra = variant.partition("+")
    return precision, extra == "compile"


def _bench_config(data_dir: Path, runs_dir: Path, depth: int, variant: str, steps: int, batch_size: int, device: str,
                  val_size: int) -> Any:
    from lab.config import make_config

    precision, compile_ = _split_variant(variant)
    return make_config({
        "model": {"arch": "resnet", "depth": depth, "shortcut": "A"},
        "data": {"name": "cifar10", "data_dir": str(data_dir), "verify_md5": False, "val_size": val_size,
                 "crop_pad": 4, "flip": True},
        "optim": {"batch_size": batch_size, "max_steps": steps, "milestones": []},
        "train": {"eval_every": steps, "device": device, "precision": precision, "compile": compile_},
        "track": {"runs_dir": str(runs_dir), "study": "bench", "wandb": "disabled"},
    })


class _Clock:
    """Lightning callback: the wall time of iterations ``warmup`` (exclusive) to the last (inclusive), synced."""

    def __new__(cls, warmup: int, last: int):
        import pytorch_lightning as pl

        class Clock(pl.Callback):
            def __init__(self) -> None:
                self.start = self.stop = None

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
                if trainer.global_step in (warmup, last):
                    _sync(pl_module.device)
                    setattr(self, "start" if trainer.global_step == warmup else "stop", time.perf_counter())

        return Clock()


def measure_lab(data_dir: Path, runs_dir: Path, depth: int, variant: str, warmup: int, steps: int, batch_size: int,
                device: str) -> dict[str, Any]:
    """lab's own training path (``lab.train.train``: Lightning, the data stream on the device, the divergence check),
    timed over ``steps`` iterations after ``warmup``; its one evaluation comes after the clock stops."""
    from lab.train import train

    cfg = _bench_config(data_dir, runs_dir / f"{depth}-{variant}", depth, variant, warmup + steps, batch_size, device,
                        val_size=500)
    clock = _Clock(warmup, warmup + steps)
    start = time.perf_counter()
    train(cfg, callbacks=(clock,))
    return {"images_per_s": steps * batch_size / (clock.stop - clock.start), "first_iterations_s": clock.start - start}


def _train_loop(net: torch.nn.Module, batches: Any, warmup: int, steps: int, device: torch.device,
                precision: str = "32", compile_: bool = False) -> tuple[float, float]:
    """A plain PyTorch loop (the paper's SGD): (seconds of the ``steps`` timed iterations, seconds before them)."""
    from lab.train.classifier import compiled_step, loss_and_wrong

    fused = True if compile_ and device.type == "cuda" else None
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, fused=fused)
    step_fn = compiled_step(device) if compile_ else loss_and_wrong
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    net.train()
    t0 = time.perf_counter()
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if compile_ and device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        with autocast:
            loss, _ = step_fn(net, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return time.perf_counter() - start, start - t0


def _cifar_net(depth: int, device: torch.device, channels_last: bool) -> torch.nn.Module:
    from lab import nets

    net = nets.build_net(nets.NetConfig("resnet", depth, "A", 3, 10, "cifar")).to(device)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def _loader(data_dir: Path, batch_size: int, workers: int, device: torch.device) -> torch.utils.data.DataLoader:
    """torchvision's CIFAR-10 through a DataLoader with per-image RandomCrop(32, padding=4) + RandomHorizontalFlip:
    the input pipeline of public reproductions."""
    from torchvision import transforms

    from lab.data.tensors import _cifar_class

    tf = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    ])
    dataset = _cifar_class("cifar10", verify=False)(root=str(data_dir), train=True, transform=tf)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       pin_memory=device.type == "cuda", drop_last=True, persistent_workers=workers > 0)


def _forever(loader: Any):
    while True:
        yield from loader


def measure_dataloader_loop(data_dir: Path, depth: int, warmup: int, steps: int, batch_size: int, workers: int,
                            device: torch.device) -> dict[str, Any]:
    """The public reproductions' way: eager fp32, NCHW, a DataLoader of per-image transforms in worker processes."""
    net = _cifar_net(depth, device, channels_last=False)
    seconds, before = _train_loop(net, _forever(_loader(data_dir, batch_size, workers, device)), warmup, steps, device)
    return {"images_per_s": steps * batch_size / seconds, "first_iterations_s": before}


def _resident_batches(n: int, batch_size: int, device: torch.device):
    """``n`` random normalised batches on the device, cycled: no data path at all."""
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(batch_size, 3, 32, 32, generator=g).to(device), torch.randint(0, 10, (batch_size,), generator=g).to(device))
            for _ in range(n)]
    while True:
        yield from data


def measure_floor(depth: int, variant: str, warmup: int, steps: int, batch_size: int, device: torch.device) -> dict[str, Any]:
    """The floor: lab's net, layout, precision and compiled step, data resident on the device, a plain loop."""
    precision, compile_ = _split_variant(variant)
    channels_last = device.type == "cpu" or (device.type == "cuda" and precision == "bf16-mixed")  # as Classifier
    net = _cifar_net(depth, device, channels_last)
    seconds, before = _train_loop(net, _resident_batches(4, batch_size, device), warmup, steps, device, precision, compile_)
    return {"images_per_s": steps * batch_size / seconds, "first_iterations_s": before}


def measure_data_paths(data_dir: Path, batches: int, batch_size: int, workers: int, device: torch.device) -> list[dict[str, Any]]:
    """Batches/s of the input alone: lab's ``TrainStream`` (uint8 on the device, batched crop+flip there) vs the
    DataLoader pipeline (per-image transforms in workers, then the copy to the device)."""
    from lab.config import DataConfig
    from lab.data import TrainStream, load_cifar

    data = load_cifar(DataConfig(name="cifar10", data_dir=str(data_dir), verify_md5=False, val_size=500)).to(device)
    stream = TrainStream(data.train, data.mean, data.std, batch_size, seed=0, pad=4, flip=True)
    rows = []
    for name, it, warm in (("lab TrainStream (on the device)", iter(stream), 2),
                           (f"DataLoader, {workers} workers", _forever(_loader(data_dir, batch_size, workers, device)),
                            max(workers, 1) * 2)):
        for i in range(warm + batches):
            if i == warm:
                _sync(device)
                start = time.perf_counter()
            x, y = next(it)
            x = x.to(device, non_blocking=True)
        _sync(device)
        rows.append({"path": name, "images_per_s": batches * batch_size / (time.perf_counter() - start)})
    return rows


def measure_sweep(data_dir: Path, root: Path, plan: BenchPlan, device: str) -> list[dict[str, Any]]:
    """Trials/hour of ``lab sweep`` on a small grid (seeds of one net), with 1 worker and with N.

    With 1 worker two trials (one with ``--quick``) run one after the other; with N, N trials at once. Each trial is a process of its
    own (startup, data, compile cache) training ``sweep_steps`` iterations: the probe measures trial overhead and
    how well N trials share the machine, not a paper-length run.
    """
    precision, compile_ = _split_variant(plan.sweep_variant)
    project = root / "sweep-project"
    (project / "experiments").mkdir(parents=True, exist_ok=True)
    (project / "sweeps").mkdir(exist_ok=True)
    recipe = _bench_config(data_dir, root / "unused", plan.sweep_depth, plan.sweep_variant, plan.sweep_steps,
                           plan.batch_size, device, val_size=500).to_dict()
    del recipe["track"]
    (project / "experiments" / "bench.yaml").write_text(yaml.safe_dump(recipe))
    rows = []
    for workers, trials in ((1, plan.sweep_serial_trials), (plan.sweep_workers, plan.sweep_workers)):
        name = f"bench-w{workers}"
        (project / "sweeps" / f"{name}.yaml").write_text(yaml.safe_dump({"recipe": "bench", "grid": {"train.seed": list(range(trials))}}))
        env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "lab", "sweep", name, "--workers", str(workers), "--wandb", "disabled",
                               "--runs-dir", str(root / "sweep-runs")], cwd=project, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"lab sweep {name} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")
        summaries = [read_json(r.summary_path) for r in RunRecord.under(root / "sweep-runs" / name, "finished")]
        rows.append({
            "workers": workers, "trials": trials, "wall_s": wall, "trials_per_hour": trials / wall * 3600,
            "training_images_per_s": sum(s["steps"] * plan.batch_size for s in summaries) / wall,
            "trial_wall_s": [s["wall_s"] for s in summaries],
        })
    for row in rows:
        row["ratio"] = row["trials_per_hour"] / rows[0]["trials_per_hour"]
    return rows


def project_table6(training: list[dict[str, Any]], packing: float) -> dict[str, Any] | None:
    """Hours of Table 6's sweep with one seed (9 nets of 64k iterations) from the fastest lab variant of each
    measured depth: ms/iteration fitted linear in depth, times the sweep probe's packing gain (N workers vs 1)."""
    best: dict[int, float] = {}
    for row in training:
        if row["path"] == "lab":
            best[row["depth"]] = max(best.get(row["depth"], 0.0), row["images_per_s"])
    if len(best) < 2:
        return None
    depths = np.array(sorted(best), dtype=float)
    ms = np.array([training[0]["batch_size"] / best[int(d)] * 1000 for d in depths])
    slope, intercept = np.polyfit(depths, ms, 1)
    nets_ms = [intercept + slope * d for arch in TABLE6_DEPTHS for d in TABLE6_DEPTHS[arch]]
    one_process_h = sum(nets_ms) * PAPER_STEPS / 1000 / 3600
    return {"nets": 9, "steps": PAPER_STEPS, "one_at_a_time_h": one_process_h, "packing_gain": packing,
            "packed_h": one_process_h / packing}


def _markdown(report: dict[str, Any]) -> str:
    lines = [f"lab bench ({report['mode']}) on {report['machine']['device_name']}; torch {report['machine']['torch']}; "
             f"{report['machine']['cores']} CPU cores; batch {report['settings']['batch_size']}; "
             f"{report['settings']['train_images']:,} generated CIFAR-format images", ""]
    lines += ["| net | path | precision | images/s | ms/iteration | x DataLoader loop | x floor |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["training"]:
        ratios = (f"{r['vs_dataloader']:.2f}" if r.get("vs_dataloader") else "", f"{r['vs_floor']:.2f}" if r.get("vs_floor") else "")
        lines.append(f"| ResNet-{r['depth']} | {r['label']} | {r['variant']} | {r['images_per_s']:,.0f} | "
                     f"{r['ms_per_iteration']:.1f} | {ratios[0]} | {ratios[1]} |")
    if report["data"]:
        lines += ["", "| data path alone | images/s |", "| --- | --- |"]
        lines += [f"| {r['path']} | {r['images_per_s']:,.0f} |" for r in report["data"]]
    if report["sweep"]:
        s = report["settings"]
        lines += ["", f"| lab sweep (ResNet-{s['sweep_depth']} {s['sweep_variant']}, {s['sweep_steps']} iterations a trial) "
                  "| trials | wall s | trials/hour | training images/s | x 1 worker |", "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['workers']} worker{'s' if r['workers'] > 1 else ''} | {r['trials']} | {r['wall_s']:.1f} | "
                  f"{r['trials_per_hour']:,.0f} | {r['training_images_per_s']:,.0f} | {r['ratio']:.2f} |" for r in report["sweep"]]
    if report.get("table6"):
        t = report["table6"]
        lines += ["", f"Table 6 with one seed (9 nets x 64k iterations), projected from the fastest lab variant: "
                  f"{t['one_at_a_time_h'] * 60:.0f} min one at a time; {t['packed_h'] * 60:.0f} min with the probe's "
                  f"packing gain of {t['packing_gain']:.2f}"]
    if report["skipped"]:
        lines += ["", "skipped (time budget): " + "; ".join(report["skipped"])]
    return "\n".join(lines) + "\n"


def run_bench(mode: str = "full", out: Path | None = None, device: str | None = None, sweep: bool = True,
              depths: tuple[int, ...] | None = None, echo: Any = print) -> dict[str, Any]:
    """Measure (``mode``: quick | full | gpu-check), write ``out`` (JSON) and ``out`` with ``.md`` (the table), return the report."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    plan = bench_plan(mode, device)
    if depths:  # the mode's iterations and variants for its depths; 20 iterations in fp32 for others
        plan.steps = {d: plan.steps.get(d, 20) for d in depths}
        plan.variants = {d: plan.variants.get(d, ("32",)) for d in depths}
        plan.depths = depths
    started = time.perf_counter()
    skipped: list[str] = []

    def time_left(what: str) -> bool:
        if plan.budget_s is not None and time.perf_counter() - started > plan.budget_s:
            skipped.append(what)
            return False
        return True

    training: list[dict[str, Any]] = []
    data_rows: list[dict[str, Any]] = []
    sweep_rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        root = Path(tmp)
        data_dir = write_cifar10(root / "data", plan.train_images, plan.train_images // 10)
        for depth in plan.depths:
            warmup, steps = plan.warmup, plan.steps[depth]
            if time_left(f"ResNet-{depth} DataLoader loop"):
                r = measure_dataloader_loop(data_dir, depth, warmup, steps, plan.batch_size, plan.loader_workers, dev)
                training.append({"depth": depth, "path": "dataloader", "label": f"DataLoader loop ({plan.loader_workers} workers, NCHW)",
                                 "variant": "32", **r})
                echo(f"ResNet-{depth} DataLoader loop: {r['images_per_s']:,.0f} img/s")
            for variant in plan.variants[depth]:
                for path, label, measure in (
                    ("lab", "lab train", lambda: measure_lab(data_dir, root / "runs", depth, variant, warmup, steps, plan.batch_size, device)),
                    ("floor", "floor (data on the device, plain loop)", lambda: measure_floor(depth, variant, warmup, steps, plan.batch_size, dev)),
                ):
                    if time_left(f"ResNet-{depth} {path} {variant}"):
                        r = measure()
                        training.append({"depth": depth, "path": path, "label": label, "variant": variant, **r})
                        echo(f"ResNet-{depth} {label} {variant}: {r['images_per_s']:,.0f} img/s")
        for r in training:
            r["batch_size"] = plan.batch_size
            r["ms_per_iteration"] = plan.batch_size / r["images_per_s"] * 1000
            loop = [x for x in training if x["depth"] == r["depth"] and x["path"] == "dataloader"]
            floor = [x for x in training if x["depth"] == r["depth"] and x["path"] == "floor" and x["variant"] == r["variant"]]
            r["vs_dataloader"] = r["images_per_s"] / loop[0]["images_per_s"] if loop and r["path"] != "dataloader" else None
            r["vs_floor"] = r["images_per_s"] / floor[0]["images_per_s"] if floor and r["path"] == "lab" else None
        if time_left("data paths"):
            data_rows = measure_data_paths(data_dir, plan.data_batches, plan.batch_size, plan.loader_workers, dev)
        if sweep and time_left("sweep probe"):
            sweep_rows = measure_sweep(data_dir, root, plan, device)
    packing = sweep_rows[-1]["training_images_per_s"] / sweep_rows[0]["training_images_per_s"] if len(sweep_rows) > 1 else 1.0
    report = {
        "mode": mode,
        "machine": {"device": device, "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else
                    (platform.processor() or platform.machine()), "cores": _cores(), "torch": torch.__version__,
                    "python": platform.python_version()},
        "settings": {k: v for k, v in asdict(plan).items()},
        "training": training, "data": data_rows, "sweep": sweep_rows,
        "table6": project_table6(training, packing) if mode != "quick" else None,
        "skipped": skipped, "elapsed_s": time.perf_counter() - started,
    }
    report["settings"] = {k: ({str(d): x for d, x in v.items()} if isinstance(v, dict) else v) for k, v in report["settings"].items()}
    table = _markdown(report)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        write = out.with_name(out.name + ".tmp")
        write.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(write, out)
        out.with_suffix(".md").write_text(table)
    echo(table)
    return report
