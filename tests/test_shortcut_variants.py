"""He 2015's nets with He 2016's shortcut variants (Table 1), Huang 2016's stochastic depth, zero-initialised
residuals and Bag of Tricks' ResNet-C/D: each computes what its paper writes."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lab import nets
from lab.config import ConfigError, make_config
from lab.nets import NetConfig, build_net, count_params


def blocks(net) -> list:
    return [b for stage in net.stages for b in stage]


def varied(block: nn.Module) -> nn.Module:
    """BN that is not the identity at eval, so that a term in the wrong place shows."""
    torch.manual_seed(1)
    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.weight.data.uniform_(0.5, 2)
    return block.eval()


@pytest.mark.parametrize("shortcut", ["gated", "shortcut_gated", "scaled", "dropout"])
def test_each_shortcut_variant_of_he_2016_table_1_joins_f_and_x_as_written(shortcut):
    net = build_net(NetConfig("resnet", 20, shortcut, gate_bias=-2.0 if "gated" in shortcut else 0.0))
    block = varied(blocks(net)[1])  # a block on the identity shortcut
    x, relu = torch.randn(2, 16, 6, 6), torch.relu
    with torch.no_grad():
        f = block.branch(x)
        t = torch.sigmoid(block.gate(x)) if block.gate is not None else None
        expected = {"gated": lambda: relu(t * f + (1 - t) * x), "shortcut_gated": lambda: relu(f + (1 - t) * x),
                    "scaled": lambda: relu(0.5 * f + 0.5 * x), "dropout": lambda: relu(f + x)}[shortcut]()
        assert torch.allclose(block(x), expected, atol=1e-6)
    if block.gate is not None:
        assert torch.all(block.gate.bias == -2.0) and block.gate.kernel_size == (1, 1)
    transitions = [b for b in blocks(net) if not isinstance(b.shortcut, nn.Identity)]
    assert len(transitions) == 2 and all(isinstance(b.shortcut, nets.ZeroPadShortcut) and b.gate is None
                                         for b in transitions)  # where the shape changes: option A
    if shortcut == "dropout":  # in training, half the shortcut's entries are dropped (and the rest doubled)
        block.train()
        s = block(x) - relu(block.branch(x) + 2 * x)
        kept = torch.isclose(block(x), relu(block.branch(x) + 2 * x)).float().mean()
        assert s.abs().sum() > 0 and 0.3 < kept < 0.8


def test_stochastic_depth_survival_falls_linearly_to_p_l_and_drops_whole_blocks_for_the_batch():
    net = build_net(NetConfig("resnet", 110, "A", stochastic_depth=0.5))
    survival = [b.survival for b in blocks(net)]
    assert len(survival) == 54 and survival[-1] == 0.5 and survival[0] == pytest.approx(1 - 0.5 / 54)
    assert sum(survival) == pytest.approx(40.25)  # Huang 2016: about 40 blocks a mini-batch, of 54
    block = varied(blocks(net)[-1]).train()
    x = torch.randn(4, 64, 4, 4)
    outs = []
    for seed in range(40):
        torch.manual_seed(seed)
        outs.append(block(x))
    dropped = [torch.equal(o, torch.relu(x)) for o in outs]  # the whole batch at once: not timm's per-sample drop
    assert 8 < sum(dropped) < 32
    assert all(not torch.equal(o[0], torch.relu(x[0])) for o, d in zip(outs, dropped) if not d)
    block.eval()
    with torch.no_grad():
        assert torch.allclose(block(x), torch.relu(0.5 * block.branch(x) + x), atol=1e-6)  # scaled by p_l at test


def test_zero_initialised_residuals_start_as_identities():
    net = build_net(NetConfig("resnet", 20, "A", zero_init_residual=True)).eval()
    assert all(torch.all(b.bn2.weight == 0) for b in blocks(net))
    rx = build_net(NetConfig(family="resnext", depth=11, cardinality=2, group_width=4, zero_init_residual=True))
    assert all(torch.all(b.bn3.weight == 0) for b in blocks(rx)) and any(torch.any(b.bn2.weight != 0) for b in blocks(rx))
    x = torch.randn(2, 16, 6, 6).relu()  # BN's shift is 0 at init too: a block is relu(x) until it learns
    with torch.no_grad():
        assert torch.allclose(blocks(net)[1](x), x)


def test_resnet_c_and_d_keep_the_parameters_and_change_where_they_look():
    b = build_net(NetConfig("resnet", 50, "B", 3, 1000, style="imagenet"))
    d = build_net(NetConfig("resnet", 50, "B", 3, 1000, style="imagenet", stem="deep", avg_down=True))
    # the 7x7 (9,408 weights) out; 3x3s of 3->32, 32->32, 32->64 and two BNs of 32 in: timm's resnet50d's count
    assert count_params(b) == 25_557_032 and count_params(d) == 25_557_032 - 9_408 + 864 + 9_216 + 18_432 + 128
    strided = [blk.shortcut for blk in blocks(d) if isinstance(blk.shortcut, nn.Sequential) and len(blk.shortcut) == 3]
    assert len(strided) == 3 and all(isinstance(s[0], nn.AvgPool2d) and s[1].stride == (1, 1) for s in strided)
    assert d(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.parametrize("override,message", [
    ({"model.gate_bias": -6.0}, "model.gate_bias: -6.0 has no effect without a gate"),
    ({"model.stochastic_depth": 0.0}, r"model.stochastic_depth: 0.0 is not a survival probability p_L in \(0, 1\]"),
    ({"model.stochastic_depth": 0.5, "model.arch": "plain"}, "model.stochastic_depth: 0.5 drops residual branches"),
    ({"model.stem": "deep"}, "model.stem: 'deep' is a change to the ImageNet-style nets"),
    ({"model.family": "preact", "model.zero_init_residual": True}, "model.zero_init_residual: True has no effect on model.family=preact"),
])
def test_knobs_that_would_change_nothing_are_refused_in_one_line(override, message):
    with pytest.raises(ConfigError, match=message):
        make_config({}, override)


def test_run_names_say_the_shortcut_variant_and_stochastic_depth():
    assert make_config({}, {"model.shortcut": "gated", "model.depth": 110}).run_name == "resnet-110-gated-s0"
    assert make_config({}, {"model.stochastic_depth": 0.5, "model.depth": 1202}).run_name == "resnet-1202-sd0.5-s0"


def test_runs_of_one_name_whose_gates_differ_are_not_averaged_as_one_net(tmp_path, lab_here):
    from tests.conftest import ROOT

    common = [str(ROOT / "experiments" / "digits.yaml"), "model.depth=8", "model.shortcut=gated", "optim.max_steps=4",
              "optim.milestones=[2]", "train.eval_every=2", "track.wandb=disabled", "track.runs_dir=runs", "track.study=gates"]
    for seed, bias in ((0, -2.0), (1, 0.0)):
        assert lab_here("train", *common, f"model.gate_bias={bias}", f"train.seed={seed}", cwd=tmp_path).returncode == 0
    refused = lab_here("analyze", "gates", "--runs-dir", "runs", cwd=tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert "resnet-8-gated-s1: model.gate_bias is 0.0, resnet-8-gated-s0's (the same net to lab analyze) -2.0" in refused.stderr
