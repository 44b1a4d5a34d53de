import pytest
import torch

from lab import nets
from lab.nets import NetConfig, build_net, count_params
from lab.reference import CIFAR10_PARAMS


@pytest.mark.parametrize("depth", sorted(CIFAR10_PARAMS))
def test_parameter_counts_match_table_6(depth):
    for arch in ("resnet", "plain"):
        assert count_params(build_net(NetConfig(arch, depth, "A"))) == CIFAR10_PARAMS[depth]


@pytest.mark.parametrize("in_channels,size", [(1, 8), (3, 32), (3, 17)])
def test_any_channel_count_and_image_size(in_channels, size):
    net = build_net(NetConfig("resnet", 20, "B", in_channels=in_channels, num_classes=7))
    assert net(torch.randn(4, in_channels, size, size)).shape == (4, 7)
    assert net.forward_features(torch.randn(2, in_channels, size, size)).shape == (2, 64)


def _shortcuts(net):
    return [block.shortcut for stage in net.stages for block in stage]


def test_plain_has_no_shortcuts_and_option_a_no_parameters():
    assert all(s is None for s in _shortcuts(build_net(NetConfig("plain", 20))))
    a = build_net(NetConfig("resnet", 20, "A"))
    assert sum(p.numel() for s in _shortcuts(a) for p in s.parameters()) == 0
    assert sum(isinstance(s, nets.ZeroPadShortcut) for s in _shortcuts(a)) == 2  # where stages change shape


def test_option_a_subsamples_and_zero_pads_channels():
    x = torch.randn(2, 16, 8, 8)
    out = nets.ZeroPadShortcut(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, 16:]) == 0


def test_option_b_projects_only_where_shape_changes_and_c_everywhere():
    n = 3  # depth 20
    b = _shortcuts(build_net(NetConfig("resnet", 20, "B")))
    c = _shortcuts(build_net(NetConfig("resnet", 20, "C")))
    assert sum(isinstance(s, torch.nn.Sequential) for s in b) == 2
    assert sum(isinstance(s, torch.nn.Identity) for s in b) == 3 * n - 2
    assert all(isinstance(s, torch.nn.Sequential) for s in c) and len(c) == 3 * n
    # 1x1 conv + BN: 16*32 + 2*32 and 32*64 + 2*64 more than option A
    assert count_params(build_net(NetConfig("resnet", 20, "B"))) == CIFAR10_PARAMS[20] + 576 + 2176


def test_residual_block_is_identity_when_its_branch_is_zero():
    block = nets.BasicBlock(16, 16, stride=1, residual=True, shortcut="A").eval()
    torch.nn.init.zeros_(block.bn2.weight)
    x = torch.rand(2, 16, 8, 8)  # non-negative: unchanged by the final ReLU
    assert torch.allclose(block(x), x)
    plain = nets.BasicBlock(16, 16, stride=1, residual=False, shortcut="A").eval()
    torch.nn.init.zeros_(plain.bn2.weight)
    assert torch.count_nonzero(plain(x)) == 0


@pytest.mark.parametrize("depth", [0, 19, 21, 57, "20"])
def test_invalid_depth_names_the_valid_ones(depth):
    with pytest.raises(ValueError, match=r"not 6n\+2.*20, 26, 32, 44, 56, 110"):
        NetConfig("resnet", depth)


def test_run_names_read_like_the_paper():
    assert nets.run_name("plain", 56, "A", 0) == "plain-56-s0"
    assert nets.run_name("resnet", 110, "B") == "resnet-110-B"
    assert nets.run_name("resnet", 110, "A") == "resnet-110"
