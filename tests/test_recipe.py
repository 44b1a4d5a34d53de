"""The shipped digits recipe shows the paper's result on seeds and thread counts the shipped sweeps do not use.

He 2015, Figure 6: plain nets degrade with depth, residual nets do not. Without its warm-up the recipe's resnet-56
ended anywhere from 3% to 47% training error depending on the thread count (float summation order); these runs
hold it to the result on every one of them, and show that the old recipe's runs are marked as unstable.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lab.config import load_config
from lab.train import train

RECIPE = Path(__file__).resolve().parent.parent / "experiments" / "digits.yaml"
SEEDS = (3, 4)  # the shipped sweeps use seeds 0, 1, 2
RUNS = ((3, 1), (4, 2))  # (seed, threads): two seeds and both thread counts of a 2-core machine, in 6 runs


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def run(tmp_path: Path, arch: str, depth: int, seed: int, study: str, **overrides) -> dict:
    return train(load_config(RECIPE, {"model.arch": arch, "model.depth": depth, "train.seed": seed,
                                      "train.device": "cpu", "track.runs_dir": str(tmp_path), "track.study": study,
                                      "track.wandb": "disabled", **overrides}))


@pytest.mark.slow
def test_resnet56_trains_and_plain56_degrades_on_every_seed_and_thread_count(tmp_path, threads):
    for seed, n in RUNS:
        threads(n)
        shallow = {arch: run(tmp_path, arch, 20, seed, f"t{n}") for arch in ("plain", "resnet")}
        deep = {arch: run(tmp_path, arch, 56, seed, f"t{n}") for arch in ("plain", "resnet")}
        where = f"seed {seed}, {n} thread{'s' * (n > 1)}"
        assert deep["resnet"]["train_err"] <= shallow["resnet"]["train_err"] + 3, f"{where}: resnet-56 trains"
        assert deep["plain"]["train_err"] >= shallow["plain"]["train_err"] + 15, f"{where}: plain-56 degrades"
        assert deep["resnet"]["warnings"] == [], where  # trained cleanly: no spike, nowhere near chance
        # plain-56 may end near chance (81.9% on seed 4 at 2 threads in one CI run: the degradation problem at its
        # worst, and marked so); what it must not do is spike, the instability the warm-up cures
        assert not [w for w in deep["plain"]["warnings"] if w.startswith("train loss ")], where


@pytest.mark.slow
def test_the_recipe_without_its_warm_up_is_marked_unstable_at_depth_56(tmp_path, threads):
    threads(1)
    summary = run(tmp_path, "resnet", 56, SEEDS[0], "no-warmup", **{"optim.warmup_lr": None, "optim.warmup_steps": 0})
    assert summary["warnings"] and summary["warnings"][0].startswith("train loss ")
    assert "chance 2.30" in summary["warnings"][0]
