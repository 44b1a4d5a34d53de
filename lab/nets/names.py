"""What names a net, without torch: the families, archs, shortcut options, blocks and units; the valid depths;
which fields a family reads (``check``: one rule set for the config and the nets); and run names.

``lab.config`` validates a config with these (reading a config loads no torch); ``lab.nets`` builds the nets.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

# model.family: He 2015's nets (plain or residual), He 2016's pre-activation nets, Zagoruyko & Komodakis 2016's
# wide nets, Xie 2017's ResNeXt
FAMILIES = ("resnet", "preact", "wide", "resnext")
ARCHS = ("plain", "resnet")
# He 2015's options A, B, C; He 2016's variants (Table 1) of the identity shortcut (``lab.nets.resnet.Block``)
SHORTCUTS = ("A", "B", "C", "gated", "shortcut_gated", "scaled", "dropout")
GATED = ("gated", "shortcut_gated")
STEMS = ("default", "deep")
STYLES = ("cifar", "imagenet")
BLOCKS = ("auto", "basic", "bottleneck")
# He 2016, Figure 4: (a) original, (b) BN after addition, (c) ReLU before addition, (d) ReLU-only pre-activation,
# (e) full pre-activation
UNITS = ("original", "bn_after_add", "relu_before_add", "relu_only_preact", "full_preact")
# He 2015, Table 1: blocks per stage, and whether they are bottlenecks.
IMAGENET_LAYOUTS = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
    152: ((3, 8, 36, 3), True),
}
# The fields only some families read, with their defaults: a value other than the default elsewhere is refused (it
# would change nothing, silently)
FAMILY_FIELDS: dict[str, tuple[Any, tuple[str, ...]]] = {
    "shortcut": ("A", ("resnet",)),
    "style": ("cifar", ("resnet",)),
    "block": ("auto", ("preact",)),
    "unit": ("full_preact", ("preact",)),
    "width": (1, ("wide",)),
    "dropout": (0.0, ("wide",)),
    "cardinality": (8, ("resnext",)),
    "group_width": (64, ("resnext",)),
    "gate_bias": (0.0, ("resnet",)),
    "stochastic_depth": (1.0, ("resnet",)),
    "zero_init_residual": (False, ("resnet", "resnext")),
    "stem": ("default", ("resnet",)),
    "avg_down": (False, ("resnet",)),
}


class NetError(ValueError):
    """A net that does not exist: ``field`` (``model.depth``) and what is wrong with it, ``template`` with ``{}``
    where the ``value`` is quoted (``text``: by a quoting that caps what it repeats of hostile input)."""

    def __init__(self, field: str, template: str, value: Any = None) -> None:
        self.field, self.template, self.value = field, template, value
        super().__init__(self.text(lambda v: repr(v) if len(repr(v)) <= 80 else repr(v)[:77] + "..."))

    def text(self, quote: Callable[[Any], str]) -> str:
        return f"{self.field}: " + self.template.format(quote(self.value))


@dataclass(frozen=True)
class NetConfig:
    """What a depth study varies (the fields of a config's model section, checked by ``check``), and the shape of
    the data: what ``lab.nets.build_net`` builds."""

    arch: str = "resnet"
    depth: int = 20
    shortcut: str = "A"
    in_channels: int = 3
    num_classes: int = 10
    style: str = "cifar"  # cifar: 6n+2 layers for small images | imagenet: Table 1's 18/34/50/101/152
    family: str = "resnet"
    block: str = "auto"
    unit: str = "full_preact"
    width: int = 1
    dropout: float = 0.0
    cardinality: int = 8
    group_width: int = 64
    gate_bias: float = 0.0
    stochastic_depth: float = 1.0
    zero_init_residual: bool = False
    stem: str = "default"
    avg_down: bool = False

    def __post_init__(self) -> None:
        check(self)

    @classmethod
    def of(cls, model: Any, in_channels: int, num_classes: int) -> "NetConfig":
        """The net of a config's model section (``lab.config.ModelConfig``) for data of that shape."""
        data = {f.name: getattr(model, f.name) for f in fields(cls) if hasattr(model, f.name)}
        return cls(**{**data, "in_channels": in_channels, "num_classes": num_classes})


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


def preact_block(depth: int, block: str) -> str:
    """The block of a pre-activation net: He 2016 uses basic blocks up to 110 layers and bottlenecks from 164
    (``auto``); 164 is also 6n+2, which is how a public "preresnet-164" came to have 27 basic units a stage."""
    if block != "auto":
        return block
    return "bottleneck" if depth >= 164 and (depth - 2) % 9 == 0 else "basic"


def units_per_stage(model: Any) -> int:
    """Units (blocks) in each of the three stages of a CIFAR-style net of ``model``'s family and depth (a
    ``NetError`` naming ``model.depth`` if there is no such net)."""
    depth, family = model.depth, model.family
    if family == "resnet" or (family == "preact" and preact_block(depth, model.block) == "basic"):
        try:
            return check_depth(depth)
        except ValueError as e:
            raise NetError("model.depth", str(e).replace("{", "{{").replace("}", "}}")) from None
    if not isinstance(depth, int) or isinstance(depth, bool):
        raise NetError("model.depth", "depth {} is not a whole number of layers", depth)
    per_unit, offset, rule, examples = {
        "preact": (9, 2, "9n+2 (bottleneck units of 3 layers)", "11, 20, 29, ..., 164, ..., 1001"),
        "wide": (6, 4, "6N+4 (WRN-d-k)", "10, 16, 22, 28, 40"),
        "resnext": (9, 2, "9n+2 (bottleneck blocks)", "29 (ResNeXt-29), 38, ..."),
    }[family]
    n, rest = divmod(depth - offset, per_unit)
    if n < 1 or rest:
        raise NetError("model.depth", f"depth {{}} is not {rule} with n >= 1 for model.family={family}: valid depths are {examples}", depth)
    return n


def check(model: Any) -> None:
    """Raise ``NetError`` naming the field of ``model`` (anything with the model section's fields) that makes no
    net: an unknown name, a depth the family does not have, a field the family does not read."""
    for field, choices in (("family", FAMILIES), ("arch", ARCHS), ("shortcut", SHORTCUTS), ("style", STYLES),
                           ("block", BLOCKS), ("unit", UNITS), ("stem", STEMS)):
        value = getattr(model, field)
        if value not in choices:
            raise NetError(f"model.{field}", f"{{}} is not one of {', '.join(choices)}", value)
    for field, (default, families) in FAMILY_FIELDS.items():
        value = getattr(model, field)
        if value != default and model.family not in families:
            raise NetError(f"model.{field}", f"{{}} has no effect on model.family={model.family} (only on "
                           f"{', '.join(families)}); leave it at {default!r}", value)
    if model.family == "resnet" and model.style == "imagenet":
        try:
            check_depth(model.depth, "imagenet")
        except ValueError as e:
            raise NetError("model.depth", str(e).replace("{", "{{").replace("}", "}}")) from None
    else:
        units_per_stage(model)
    if model.family == "wide" and not (isinstance(model.width, int) and model.width >= 1):
        raise NetError("model.width", "{} is not a widening factor k >= 1 (WRN-28-10: 10)", model.width)
    if not 0.0 <= model.dropout < 1.0:
        raise NetError("model.dropout", "{} is not a probability in [0, 1) (WRN on CIFAR: 0.3)", model.dropout)
    if model.gate_bias != 0.0 and model.shortcut not in GATED:
        raise NetError("model.gate_bias", f"{{}} has no effect without a gate: model.shortcut is {model.shortcut!r}, "
                       f"not {' or '.join(GATED)}", model.gate_bias)
    if not 0.0 < model.stochastic_depth <= 1.0:
        raise NetError("model.stochastic_depth", "{} is not a survival probability p_L in (0, 1] (Huang 2016: 0.5; "
                       "1: no block dropped)", model.stochastic_depth)
    if model.stochastic_depth < 1.0 and (model.arch != "resnet" or model.shortcut not in ("A", "B", "C")):
        raise NetError("model.stochastic_depth", "{} drops residual branches: it needs model.arch=resnet and a "
                       "shortcut of option A, B or C", model.stochastic_depth)
    if (model.stem != "default" or model.avg_down) and model.style != "imagenet":
        field = "model.stem" if model.stem != "default" else "model.avg_down"
        raise NetError(field, "{} is a change to the ImageNet-style nets (Bag of Tricks' ResNet-C/D): it needs "
                       "model.style=imagenet", model.stem if model.stem != "default" else model.avg_down)
    for field in ("cardinality", "group_width"):
        if getattr(model, field) < 1:
            raise NetError(f"model.{field}", "{} is not >= 1 (ResNeXt-29 8x64d: 8 and 64)", getattr(model, field))


def run_name(model: Any, seed: int | None = None) -> str:
    """Names as in the papers: ``plain-56``, ``resnet-110-B``, ``preact-1001``, ``wrn-28-10``, ``resnext-29-8x64d``;
    option A (the CIFAR default) and the full pre-activation unit are left out, another unit is named, and so is
    stochastic depth's p_L (``resnet-110-sd0.5``)."""
    family, arch, depth = model.family, model.arch, model.depth
    if family == "resnet":
        name = resnet_name(arch, depth, model.shortcut)
        if model.stochastic_depth < 1:  # Huang 2016's nets: resnet-110-sd0.5
            name += f"-sd{model.stochastic_depth:g}"
    else:
        name = {"preact": f"preact-{depth}", "wide": f"wrn-{depth}-{model.width}",
                "resnext": f"resnext-{depth}-{model.cardinality}x{model.group_width}d"}[family]
        if family == "preact" and model.unit != "full_preact":
            name += f"-{model.unit}"
        if family == "preact" and model.block != "auto" and model.block != preact_block(depth, "auto"):
            name += f"-{model.block}"  # preact-164-basic: 27 basic units a stage, not He 2016's 18 bottlenecks
        if arch == "plain":  # the family's layers without their shortcuts
            name = f"plain-{name}"
    return name if seed is None else f"{name}-s{seed}"


def beyond_he_2015(model: dict) -> list[str]:
    """``FIELD=VALUE`` of each field of a model section (a dict; a missing field is at its default) that makes its
    net other than one of He 2015's (or He 2016's shortcut variants, whose gate's bias goes with them): a family, a
    unit, a knob. Nets that differ only there share He 2015's arch, depth and shortcut."""
    defaults = {"family": "resnet", **{field: default for field, (default, _) in FAMILY_FIELDS.items()}}
    return [f"model.{field}={model[field]}" for field, default in defaults.items()  # a gate's bias: on gated shortcuts
            if field not in ("shortcut", "style", "gate_bias") and field in model and model[field] != default]


def resnet_name(arch: str, depth: int, shortcut: str) -> str:
    """He 2015's names: ``plain-56``, ``resnet-110-B``; option A, the CIFAR default, is left out."""
    return f"{arch}-{depth}" + (f"-{shortcut}" if arch == "resnet" and shortcut != "A" else "")


# The model fields a run name tells apart (a sweep over them keeps paper-like names)
NAMING_FIELDS = ("family", "arch", "depth", "shortcut", "block", "unit", "width", "cardinality", "group_width",
                 "stochastic_depth")
