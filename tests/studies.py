"""Hand-made studies for the analysis tests: run records as lab.train writes them, with known errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from lab import nets
from lab.config import make_config
from tests.conftest import TINY_RECIPE

# Test errors (%) of hand-made runs, seeds 0, 1, 2: known means, stds and Welch p-values.
ABLATION = {
    ("plain", 20, "A"): [10.0],  # one seed: no t-test
    ("resnet", 20, "A"): [8.0, 9.0, 10.0],  # mean 9, std 1: the reference
    ("resnet", 20, "B"): [8.5, 9.5, 9.0],  # mean 9: no detectable difference
    ("resnet", 20, "C"): [12.0, 13.0, 14.0],  # mean 13: p about 0.008, worse
    ("resnet", 56, "A"): [7.0, 7.5],
    ("plain", 56, "A"): [13.0, 14.0],  # 6.25 points worse, but two seeds a side: too few seeds
}


def write_record(study_dir: Path, arch: str, depth: int, shortcut: str, seed: int, test_err: float,
                 data: dict, checkpoint: bool = False, steps: int = 40) -> Path:
    """A finished run record as lab.train writes it: config.yaml, metrics.jsonl, summary.json (and last.ckpt)."""
    config = make_config(TINY_RECIPE, {"model.arch": arch, "model.depth": depth, "model.shortcut": shortcut,
                                       "train.seed": seed, "optim.max_steps": steps, "optim.milestones": [],
                                       "train.eval_every": steps // 4, "track.study": study_dir.name,
                                       **{f"data.{k}": v for k, v in data.items()}})
    run = config.run_name
    run_dir = study_dir / run
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    train_err = test_err / 2
    rows = [{"iteration": float(i), "train_err": train_err + 40 / i * 10, "val_err": test_err + 1,
             "test_err": test_err + 40 / i * 5, "train_loss": 1.0, "lr": 0.1, "epoch": 0.0}
            for i in range(steps // 4, steps + 1, steps // 4)]
    rows[-1].update(train_err=train_err, test_err=test_err)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    net = nets.build_net(nets.NetConfig(arch, depth, shortcut, 3 if data["name"] == "cifar10" else 1, 10))
    if checkpoint:
        torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "global_step": steps},
                   run_dir / "last.ckpt")
    summary = {"run": run, "study": study_dir.name, "arch": arch, "depth": depth, "shortcut": shortcut, "seed": seed,
               "dataset": data["name"], "params": nets.count_params(net), "train_err": train_err,
               "val_err": test_err + 1, "test_err": test_err, "best_val_err": test_err + 0.5, "steps": steps,
               "wall_s": 1.5, "images_per_s": 1000.0, "code_version": "0123456789ab",
               "hardware": {"device_name": "Test CPU (2 cores)", "torch": torch.__version__, "device": "cpu"},
               "config": config.to_dict()}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def write_study(root: Path, data: dict, checkpoint: bool = False, nets_errs: dict = ABLATION) -> Path:
    """Records of every net and seed; ``checkpoint``: untrained ``last.ckpt`` for seed 0 (layer responses)."""
    for (arch, depth, shortcut), errs in nets_errs.items():
        for seed, err in enumerate(errs):
            write_record(root / "ablation", arch, depth, shortcut, seed, err, data, checkpoint and seed == 0)
    return root


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small convs on 2 shared cores: a second OpenMP thread makes them several times slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

