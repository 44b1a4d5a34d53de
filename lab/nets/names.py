"""What names a net, without torch: the archs, shortcut options and styles, the valid depths, and run names.

``lab.config`` validates a config with these (reading a config loads no torch); ``lab.nets.resnet`` builds the nets.
"""
from __future__ import annotations

ARCHS = ("plain", "resnet")
SHORTCUTS = ("A", "B", "C")
STYLES = ("cifar", "imagenet")
# He 2015, Table 1: blocks per stage, and whether they are bottlenecks.
IMAGENET_LAYOUTS = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
    152: ((3, 8, 36, 3), True),
}


def valid_depths(limit: int = 1202) -> list[int]:
    """The depths ``6n + 2`` up to ``limit``, e.g. 8, 14, 20, ..., 1202."""
    return list(range(8, limit + 1, 6))


def check_depth(depth: int, style: str = "cifar") -> int:
    """Return ``n`` for a CIFAR-style depth of ``6n + 2``, or the depth of an ImageNet-style net; raise ``ValueError`` otherwise."""
    is_int = isinstance(depth, int) and not isinstance(depth, bool)
    if style == "imagenet":
        if not (is_int and depth in IMAGENET_LAYOUTS):
            raise ValueError(
                f"depth {depth!r} is not an ImageNet-style net of He 2015 Table 1: valid depths are "
                f"{', '.join(map(str, IMAGENET_LAYOUTS))} (or use model.style=cifar for 6n+2 nets)"
            )
        return depth
    if not is_int or depth < 8 or (depth - 2) % 6:
        examples = ", ".join(map(str, valid_depths(62)))
        hint = " (ImageNet-style nets of that depth: model.style=imagenet)" if depth in IMAGENET_LAYOUTS else ""
        raise ValueError(f"depth {depth!r} is not 6n+2 with n >= 1: valid depths are {examples}, ..., 110, ..., 1202, ...{hint}")
    return (depth - 2) // 6


def run_name(arch: str, depth: int, shortcut: str, seed: int | None = None) -> str:
    """Names as in the paper: ``plain-56``, ``resnet-110-B``; option A, the CIFAR default, is left out."""
    name = f"{arch}-{depth}" + (f"-{shortcut}" if arch == "resnet" and shortcut != "A" else "")
    return name if seed is None else f"{name}-s{seed}"
