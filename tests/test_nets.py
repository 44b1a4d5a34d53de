import pytest
import torch

from lab import nets
from lab.nets import NetConfig, build_net, count_params
from lab.reference import CIFAR10_PARAMS, IMAGENET_FLOPS, IMAGENET_PARAMS_34, IMAGENET_PARAMS_B


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
    with pytest.raises(ValueError, match=r"not 6n\+2.*20, 26, 32, 38, 44, 50, 56, 62, \.\.\., 110"):
        NetConfig("resnet", depth)


def test_run_names_read_like_the_paper():
    assert nets.run_name(NetConfig("plain", 56, "A"), 0) == "plain-56-s0"
    assert nets.run_name(NetConfig("resnet", 110, "B")) == "resnet-110-B"
    assert nets.resnet_name("resnet", 110, "A") == "resnet-110"


@pytest.mark.parametrize("depth", sorted(IMAGENET_PARAMS_B))
def test_imagenet_style_parameter_counts_equal_torchvisions_with_option_b(depth):
    net = build_net(NetConfig("resnet", depth, "B", 3, 1000, style="imagenet"))
    assert count_params(net) == IMAGENET_PARAMS_B[depth]
    # plain nets are the residual nets of option A without their (parameter-free) shortcuts
    plain = build_net(NetConfig("plain", depth, "A", 3, 1000, style="imagenet"))
    assert count_params(plain) == count_params(build_net(NetConfig("resnet", depth, "A", 3, 1000, style="imagenet")))


def test_resnet34_shortcut_options_a_b_c_parameter_counts():
    for shortcut, expected in IMAGENET_PARAMS_34.items():
        assert count_params(build_net(NetConfig("resnet", 34, shortcut, 3, 1000, style="imagenet"))) == expected


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_multiply_adds_match_table_1(depth):
    net = build_net(NetConfig("resnet", depth, "B", 3, 1000, style="imagenet"))
    assert nets.multiply_adds(net, (3, 224, 224)) == pytest.approx(IMAGENET_FLOPS[depth], rel=0.03)


def test_resnet20_multiply_adds_on_32x32():
    assert nets.multiply_adds(build_net(NetConfig("resnet", 20)), (3, 32, 32)) == pytest.approx(41e6, rel=0.02)


def test_imagenet_style_nets_share_the_cifar_blocks():
    r18 = build_net(NetConfig("resnet", 18, "A", 3, 10, style="imagenet"))
    r50 = build_net(NetConfig("resnet", 50, "A", 3, 10, style="imagenet"))
    assert all(type(b) is nets.BasicBlock for stage in r18.stages for b in stage)
    assert all(type(b) is nets.Bottleneck for stage in r50.stages for b in stage)
    # option A zero-pads the first bottleneck's 64 -> 256 channels at stride 1
    assert isinstance(r50.stages[0][0].shortcut, nets.ZeroPadShortcut)
    assert r18(torch.randn(2, 3, 64, 64)).shape == (2, 10)


def test_imagenet_depths_are_checked_for_the_style():
    with pytest.raises(ValueError, match="ImageNet-style net of He 2015 Table 1: valid depths are 18, 34, 50, 101, 152"):
        NetConfig("resnet", 20, style="imagenet")
    with pytest.raises(ValueError, match="model.style=imagenet"):
        NetConfig("resnet", 34)


@pytest.mark.parametrize("arch,shortcut", [("plain", "A"), ("resnet", "B")])
def test_convs_start_from_he_initialisation_and_bns_from_identity(arch, shortcut):
    """He et al. 2015 ("Delving deep into rectifiers"), as Section 3.4 of the ResNet paper states: every conv's
    weights Gaussian with mean 0 and std sqrt(2 / fan_out) (fan_out = out_channels x kernel area); BN scale 1, shift 0.

    torch's default (uniform, std 1/sqrt(3 fan_in)) is 0.41x that on the 16->16 3x3 convs; fan_in instead of
    fan_out is 4x on the stem (1 -> 16 channels) and 1.4x on the first conv of each later stage; a uniform
    distribution of the same std has kurtosis 1.8.
    """
    torch.manual_seed(0)
    net = build_net(NetConfig(arch, 20, shortcut, in_channels=1, num_classes=10))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 19 + (2 if shortcut == "B" else 0)  # 19 3x3 convs, option B's two 1x1 projections
    standardised = []
    for conv in convs:
        w = conv.weight.detach()
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        z = w.flatten() / (2 / fan_out) ** 0.5
        assert abs(z.mean()) < 4 / len(z) ** 0.5, conv  # mean 0 (4 standard errors)
        assert z.std() == pytest.approx(1, abs=0.25), conv  # each conv (the stem: 144 weights, 4 standard errors)
        standardised.append(z)
    z = torch.cat(standardised)
    assert z.pow(2).mean() == pytest.approx(1, abs=0.02)  # all ~270k weights together: the scale to 2%
    assert (z.pow(4).mean() / z.pow(2).mean() ** 2).item() == pytest.approx(3, abs=0.1)  # Gaussian: kurtosis 3 (uniform: 1.8)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == len(convs)
    assert all(torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.bias, torch.zeros_like(bn.bias))
               for bn in bns)
