from pathlib import Path

import pytest

from lab.config import ConfigError, load_config, make_config
from lab.train.schedule import LrSchedule
from tests.conftest import TINY_RECIPE

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("recipe", sorted((ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_recipes_are_valid(recipe):
    load_config(recipe)


def test_overrides_are_typed_and_checked():
    cfg = make_config(TINY_RECIPE, {"model.depth": 56, "optim.lr": 1})
    assert cfg.model.depth == 56 and cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.run_name == "resnet-56-s0"


@pytest.mark.parametrize(
    "change,message",
    [
        ({"model.dept": 20}, r"model.dept: unknown key \(known here: arch, depth, shortcut, style, family, block, unit, width, dropout, "
         r"cardinality, group_width, gate_bias, stochastic_depth, zero_init_residual, stem, avg_down\)"),
        ({"model.depth": "deep"}, r"model.depth: expected int, got str 'deep'"),
        ({"model.depth": 57}, r"model.depth: depth 57 is not 6n\+2"),
        ({"model.arch": "vgg"}, r"model.arch: 'vgg' is not one of plain, resnet"),
        ({"model.shortcut": "D"}, r"model.shortcut: 'D' is not one of A, B, C"),
        ({"optim.milestones": [8, 4]}, r"optim.milestones: \[8, 4\] must be increasing"),
        ({"optim.milestones": [0.5, 8]}, r"optim.milestones: \[0.5, 8\] must be increasing positive iterations .* or increasing fractions"),
        ({"optim.milestones": [0.5, 1.5]}, r"optim.milestones: \[0.5, 1.5\] must be"),
        ({"optim.milestones": [20]}, r"optim.milestones: \[20\] go past optim.max_steps=10"),
        ({"optim.max_steps": 1, "optim.milestones": [0.5, 0.75]}, r"optim.milestones: \[0.5, 0.75\] of optim.max_steps=1 "
                                                                 r"fall on the same iterations \[1, 1\]"),
        ({"data.name": "mnist"}, r"data.name: 'mnist' is not one of digits, cifar10, cifar100"),
        ({"track.wandb": "maybe"}, r"track.wandb: 'maybe' is not one of auto, online, offline, disabled"),
        ({"optim.warmup_lr": 0.01}, r"optim.warmup_lr: set warmup_lr and warmup_steps together"),
        ({"train.seed": True}, r"train.seed: expected int, got bool True"),
        ({"optim.gamma": float("nan")}, r"optim.gamma: nan is not a finite number"),
        ({"train.device": "tpu"}, r"train.device: 'tpu' is not one of auto, cpu, cuda, cuda:N, mps"),
    ],
)
def test_bad_values_name_the_field(change, message):
    with pytest.raises(ConfigError, match=message):
        make_config(TINY_RECIPE, change)


def test_devices_that_train_takes():
    for device in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert make_config(TINY_RECIPE, {"train.device": device}).train.device == device
    for device in ("cuda:", "cuda:x", "gpu", "CPU", "cpu "):
        with pytest.raises(ConfigError, match="train.device: .* is not one of auto, cpu, cuda, cuda:N, mps"):
            make_config(TINY_RECIPE, {"train.device": device})


def test_lr_schedule_in_iterations_with_warmup():
    cfg = make_config(TINY_RECIPE, {"optim.warmup_lr": 0.01, "optim.warmup_steps": 4, "optim.milestones": [6, 8]})
    lr = [cfg.optim.lr * LrSchedule(cfg.optim)(step) for step in range(10)]
    assert lr == pytest.approx([0.01] * 4 + [0.1] * 2 + [0.01] * 2 + [0.001] * 2)


@pytest.mark.parametrize(
    "text,args,message",
    [
        ("model: {depth: 21}\n", [], "bad.yaml: model.depth: depth 21 is not 6n+2"),
        ("model: [depth\n", [], "bad.yaml: not valid YAML"),
        ("modle: {depth: 20}\n", [], "bad.yaml: modle: unknown key (known here: model, data, optim, train, track)"),
        ("model: {depth: 20}\n", ["model.depth=abc"], "model.depth: expected int, got str 'abc'"),
        ("model: {depth: 20}\n", ["depth"], "override 'depth': expected KEY=VALUE"),
    ],
)
def test_lab_train_rejects_bad_input_with_one_line_and_status_2(tmp_path, lab_here, text, args, message):
    (tmp_path / "bad.yaml").write_text(text)
    result = lab_here("train", "bad.yaml", *args, "track.runs_dir=runs", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "runs").exists()  # nothing half-written
