"""The paper's numbers, carried as data: analysis overlays them, tests check against them.

He 2015: "Deep Residual Learning for Image Recognition" (arXiv 1512.03385).
"""
from __future__ import annotations

# Table 6: exact parameter counts of the CIFAR-10 nets with option-A shortcuts
# (identical for plain nets, whose layers are the same).
CIFAR10_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962, 1202: 19_421_274}

# Table 6: CIFAR-10 test error (%) of ResNets. 110 is the best of 5 runs (6.61 +- 0.16 mean).
CIFAR10_RESNET_TEST_ERR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}

# Table 6 gives ResNet-110's best of 5 runs (above); the text beside it gives their mean and std.
CIFAR10_RESNET110_RUNS = {"runs": 5, "mean": 6.61, "std": 0.16}

# Figure 6 (left), read off at the end of training, approximate (+-0.3).
CIFAR10_PLAIN_TEST_ERR = {20: 9.7, 32: 10.1, 44: 11.4, 56: 13.3}

# Where the numbers of paper_test_err come from, for tables that print them beside ours.
CIFAR10_TEST_ERR_SOURCE = {"resnet": "Table 6", "plain": "Figure 6, read off (±0.3)"}

# Table 1 with option-B shortcuts (projections where dimensions increase): parameter counts equal to
# torchvision's resnet18/34/50/101/152, and multiply-adds per 224x224 image ("FLOPs" in Table 1).
IMAGENET_PARAMS_B = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
IMAGENET_FLOPS = {18: 1.8e9, 34: 3.6e9, 50: 3.8e9, 101: 7.6e9, 152: 11.3e9}
# ResNet-34 with parameter-free option A (zero-padding) and with projections on every shortcut (C).
IMAGENET_PARAMS_34 = {"A": 21_623_848, "B": 21_797_672, "C": 22_716_840}

# Table 3 (and Table 2 for 18 layers): ImageNet validation error (%), 10-crop testing.
IMAGENET_TOP1 = {"plain-18": 27.94, "resnet-18": 27.88, "plain-34": 28.54, "resnet-34": 25.03, "resnet-34-B": 24.52, "resnet-34-C": 24.19}
IMAGENET_TOP5 = {"plain-34": 10.02, "resnet-34": 7.76, "resnet-34-B": 7.46, "resnet-34-C": 7.40}

# Section 4.2: the CIFAR-10 protocol, in iterations.
CIFAR10_PROTOCOL = {
    "batch_size": 128,
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "milestones": (32_000, 48_000),
    "max_steps": 64_000,
    "train_size": 45_000,
    "val_size": 5_000,
}


def paper_test_err(arch: str, dataset: str) -> dict[int, float]:
    """Test error (%) by depth that the paper reports for ``arch`` on ``dataset`` (empty if none)."""
    if dataset != "cifar10":
        return {}
    return {"resnet": CIFAR10_RESNET_TEST_ERR, "plain": CIFAR10_PLAIN_TEST_ERR}.get(arch, {})


# --- the family that followed (../shared/reference/resnet-families.md gathers the sources) ---
# Parameter counts on CIFAR-10 (10 classes) of the nets as the papers configure them: (run name, what the paper
# states, the exact count of lab's net, where the paper states it, why the two may differ). The exact counts are
# counts of the papers' architecture definitions; where a paper rounds, it is checked to its rounding.
FAMILY_PARAMS = [
    ("preact-164", 1.7e6, 1_703_258, "He 2016, Table 4", "rounded"),
    ("preact-1001", 10.2e6, 10_327_706, "He 2016, Table 4",
     "10.18M without BN's scales and shifts: the paper seems to leave BN out"),
    ("wrn-28-10", 36.5e6, 36_479_194, "Zagoruyko & Komodakis 2016", "rounded"),
    ("wrn-40-4", 8.9e6, 8_949_210, "Zagoruyko & Komodakis 2016", "rounded; recalled, not verified against the paper here"),
    ("wrn-16-8", 11.0e6, 10_961_370, "Zagoruyko & Komodakis 2016", "rounded; recalled, not verified against the paper here"),
    ("resnext-29-8x64d", 34.4e6, 34_426_698, "Xie et al. 2017, Table 7", "rounded"),
    ("resnext-29-16x64d", 68.1e6, 68_155_210, "Xie et al. 2017, Table 7", "cut to 68.1M, not rounded"),
]
