"""The fast path (``train.precision``, ``train.compile``) trains the same function as the paper's eager fp32 path.

On the CPU, ``train.compile`` runs the training forward and backward as inductor's C++ kernels (on a GPU: CUDA
graphs); its loss trajectory must follow eager's within float tolerance, checkpoints keep the net's own keys, and a
killed run resumes on the fast path exactly as on the eager path. The first compile of the tiny net costs about
40 s on 2 cores (a few seconds once inductor's cache holds it), so the compiled runs are marked slow.
"""
import json

import pytest
import pytorch_lightning as pl
import torch

from lab.config import ConfigError, make_config
from lab.records import run_dir_for
from lab.train import train
from tests.conftest import TINY_RECIPE, train_until_killed

STEPS = 40
RECIPE = {**TINY_RECIPE, "data": {"name": "digits", "crop_pad": 1, "flip": True},
          "optim": {**TINY_RECIPE["optim"], "max_steps": STEPS, "milestones": [30]}, "train": {**TINY_RECIPE["train"], "eval_every": 10}}


class Losses(pl.Callback):
    """Every training step's loss, as the optimizer saw it."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def config(runs_dir, **overrides):
    return make_config(RECIPE, {"track.runs_dir": str(runs_dir), "track.wandb": "disabled", **overrides})


def rows(cfg) -> list[dict]:
    return [json.loads(line) for line in (run_dir_for(cfg) / "metrics.jsonl").read_text().splitlines()]


def trained(runs_dir, **overrides):
    cfg = config(runs_dir, **overrides)
    losses = Losses()
    summary = train(cfg, callbacks=(losses,))
    return cfg, summary, losses.losses


@pytest.fixture(scope="module")
def eager(tmp_path_factory):
    return trained(tmp_path_factory.mktemp("eager"))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    return trained(tmp_path_factory.mktemp("compiled"), **{"train.compile": True})


def test_precision_and_compile_are_checked_and_recorded():
    assert config("r").train.precision == "32" and config("r").train.compile is False
    assert config("r", **{"train.precision": 32}).train.precision == "32"  # YAML's 32 is a number
    assert config("r", **{"train.precision": "bf16-mixed"}).to_dict()["train"]["precision"] == "bf16-mixed"
    for bad, message in (({"train.precision": 16}, "train.precision: 16 is not one of 32, bf16-mixed"),
                         ({"train.precision": "fp8"}, "train.precision: 'fp8' is not one of"),
                         ({"train.compile": "yes"}, "train.compile: expected bool")):
        with pytest.raises(ConfigError, match=message):
            config("r", **bad)


def deviation(losses: list[float], reference: list[float]) -> list[float]:
    return [abs(a - b) / abs(b) for a, b in zip(losses, reference)]


@pytest.mark.slow
def test_a_compiled_step_follows_the_eager_loss_trajectory(eager, compiled):
    (_, eager_summary, eager_losses), (_, summary, losses) = eager, compiled
    assert len(losses) == len(eager_losses) == STEPS
    # The same function of the same weights and batches: equal to float rounding (fp32: ~1e-7) while rounding
    # differences are still small (measured 2026-12-02, torch 2.14.1 on 2 cores: 0 to 1e-7 over the first 8 steps) ...
    assert max(deviation(losses[:8], eager_losses[:8])) < 1e-5
    # ... after which SGD at lr 0.1 amplifies them: a tiny net on 8x8 digits is chaotic, and from iteration 9 on a
    # difference of 1e-7 grows to 1e-3 and more. So does eager's own trajectory with lr changed by one part in a
    # million (measured: it departs by up to 2.1e-2; compiled by 7.1e-2 in one run, 7.7e-2 in another): past the
    # first steps no pointwise bound separates the two, and none is asserted. A different function (a missing
    # term, another batch) is off at the first steps already, by far more than 1e-5; where training ends is held
    # to eager's below.
    assert summary["train_err"] == pytest.approx(eager_summary["train_err"], abs=5)
    assert summary["config"]["train"]["compile"] is True


@pytest.mark.slow
def test_compiled_checkpoints_hold_the_nets_own_keys(compiled):
    cfg, _, _ = compiled
    state = torch.load(run_dir_for(cfg) / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert state and not any("_orig_mod" in key for key in state)
    assert all(key.startswith("net.") for key in state)


@pytest.mark.slow
def test_a_killed_run_resumes_on_the_fast_path_exactly(tmp_path, monkeypatch, eager, compiled):
    cfg = config(tmp_path, **{"train.compile": True})
    train_until_killed(cfg, 17, monkeypatch)
    resumed = train(cfg)  # from the checkpoint of iteration 10, in a freshly compiled step
    assert [r["iteration"] for r in rows(cfg)] == [10, 20, 30, 40] and resumed["steps"] == STEPS
    assert rows(cfg) == rows(compiled[0])  # as if never stopped: bit for bit, as the eager path resumes
    for fast, slow in zip(rows(cfg), rows(eager[0])):  # and the same curves as eager, within float tolerance
        assert fast["lr"] == slow["lr"]
        assert fast["train_loss"] == pytest.approx(slow["train_loss"], rel=5e-2)


def test_bf16_mixed_trains_on_the_cpu_close_to_fp32(tmp_path, eager):
    cfg, summary, losses = trained(tmp_path, **{"train.precision": "bf16-mixed"})
    assert summary["steps"] == STEPS and all(torch.isfinite(torch.tensor(losses)))
    # bfloat16 keeps 8 bits of mantissa: the first loss agrees to about 1%, and training goes the same way
    assert losses[0] == pytest.approx(eager[2][0], rel=2e-2)
    assert sum(losses[-10:]) < sum(losses[:10])
    state = torch.load(run_dir_for(cfg) / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())  # fp32 master weights
