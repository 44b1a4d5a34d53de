"""Typed configuration: one dataclass per concern; YAML maps onto them and is validated on load.

Every error is a :class:`ConfigError` whose message names the field, e.g.
``experiments/digits.yaml: model.depth: 57 is not 6n+2 ...``.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.nets import names as nets  # no torch: reading a config loads none

DATASETS = ("digits", "cifar10", "cifar100", "imagefolder")
SCHEDULES = ("step", "plateau")
WANDB_MODES = ("auto", "online", "offline", "disabled")
PRECISIONS = ("32", "bf16-mixed")  # train.precision: Lightning's names
DEVICES = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")  # what train.device may say
RECIPE_EXAMPLE = "model: {arch: resnet, depth: 20}"
# Hostile input is cheap: a recipe or sweep file is a few KB of a few levels; anything far beyond is refused
# while it is read, before it can cost minutes, gigabytes or a traceback.
MAX_FILE_BYTES = 1_000_000
MAX_VALUES = 10_000  # values a YAML document may expand to, counting every alias at its full size
MAX_DEPTH = 100  # levels of nesting
INT_RANGE = (-(2**63), 2**63 - 1)  # integers a field takes (seeds, iterations, sizes)


class ConfigError(ValueError):
    """A configuration or sweep spec that cannot be used; the message names the field and the fix."""


def name_problem(name: Any) -> str | None:
    """What keeps ``name`` from being one folder name of lab's (a study, sweep or run): None when nothing does.

    One path component, printable: not empty, ``.`` or ``..``, without ``/``, ``\\``, NUL, control characters or
    newlines (which would escape the runs folder, or break a generated script or a printed line), at most 200
    characters.
    """
    if not isinstance(name, str) or not name:
        return f"{quote(name)} is not a folder name" + (" (it is empty)" if name == "" else "")
    if name in (".", ".."):
        return f"{name!r} is not a folder name (it names the folder it is in, or the one above)"
    bad = next((c for c in name if c in "/\\" or not c.isprintable()), None)
    if bad is not None:
        return (f"{quote(name)} is not a folder name (it holds {bad!r}; a name is one folder name of printable "
                f"characters, without / or \\)")
    if len(name) > 200:
        return f"{quote(name)} is not a folder name ({len(name)} characters long; at most 200)"
    return None


def check_name(name: Any, what: str) -> str:
    """``name`` if it can be a folder name of lab's (``name_problem``); else ``ConfigError`` naming ``what``."""
    problem = name_problem(name)
    if problem:
        raise ConfigError(f"{what}: {problem}")
    return name


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{name}: {message}")


def quote(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (ending in ``...``): how an error message repeats input.

    It builds about ``limit`` characters whatever ``value`` is: a list that aliases make a billion values
    long, a 100 MB string, an integer of 10,000 digits (whose repr Python refuses) all quote at once.
    """
    pieces, size = [], 0
    for piece in _repr_pieces(value, limit, set()):
        pieces.append(piece)
        size += len(piece)
        if size > limit:
            break
    text = "".join(pieces)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _repr_pieces(value: Any, limit: int, open_ids: set[int]) -> typing.Iterator[str]:
    """``repr(value)`` in pieces, lazily, so that :func:`quote` stops building once it has enough."""
    kind = type(value)
    if kind in (list, tuple, dict):
        if id(value) in open_ids:  # a container inside itself, as repr() shows it
            yield "[...]" if kind is list else "{...}" if kind is dict else "(...)"
            return
        open_ids.add(id(value))
        left, right = {list: "[]", tuple: "()", dict: "{}"}[kind]
        yield left
        for i, item in enumerate(value.items() if kind is dict else value):
            if i:
                yield ", "
            if kind is dict:
                yield from _repr_pieces(item[0], limit, open_ids)
                yield ": "
                yield from _repr_pieces(item[1], limit, open_ids)
            else:
                yield from _repr_pieces(item, limit, open_ids)
        yield ",)" if kind is tuple and len(value) == 1 else right
        open_ids.discard(id(value))
    elif kind in (str, bytes):
        yield repr(value[: limit + 1])  # longer than the limit: cut anyway
    elif kind is int and value.bit_length() > 4 * limit:
        yield f"an integer of {_digits(value)} digits"
    else:
        yield repr(value)


def _digits(n: int) -> int:
    """Decimal digits of ``n``, without str(n) (Python refuses it past 4,300 digits)."""
    n = abs(n)
    if n < 10:
        return 1
    d = int(math.log10(n)) + 1  # a float's estimate: off by one at most, next to a power of ten
    return d - 1 if n < 10 ** (d - 1) else d + 1 if n >= 10**d else d


def _key(key: Any) -> str:
    """A key of the input as a field name in a message: itself when short, else cut."""
    if not isinstance(key, str):
        return quote(key, 40)
    return key if len(key) <= 40 else key[:37] + "..."


@dataclass
class ModelConfig:
    """The network: what a depth study varies."""

    arch: str = "resnet"  # plain | resnet
    depth: int = 20  # weighted layers, 6n+2
    shortcut: str = "A"  # A: zero-pad identity, B: projections where shapes change, C: all projections
    style: str = "cifar"  # cifar: 6n+2 layers (Section 4.2) | imagenet: 18/34/50/101/152 (Table 1)

    def __post_init__(self) -> None:
        _require(self.arch in nets.ARCHS, "model.arch", f"{quote(self.arch)} is not one of {', '.join(nets.ARCHS)}")
        _require(
            self.shortcut in nets.SHORTCUTS,
            "model.shortcut",
            f"{quote(self.shortcut)} is not one of {', '.join(nets.SHORTCUTS)}",
        )
        _require(self.style in nets.STYLES, "model.style", f"{quote(self.style)} is not one of {', '.join(nets.STYLES)}")
        try:
            nets.check_depth(self.depth, self.style)
        except ValueError as e:
            raise ConfigError(f"model.depth: {e}") from None


@dataclass
class DataConfig:
    """The dataset, its split and its augmentation (batched on the device, or per image in DataLoader workers)."""

    name: str = "digits"  # digits (bundled with scikit-learn) | cifar10 | cifar100 | imagefolder (train/CLASS/*.jpg, val/CLASS/*.jpg)
    data_dir: str | None = None  # folder holding the extracted torchvision archive (cifar-10-batches-py), or train/ and val/
    download: bool = False  # let torchvision download CIFAR when it is not in data_dir
    verify_md5: bool = True  # torchvision's checksums of the archive files; false only for archives you built
    val_size: int | None = None  # images held out of the training set; None: 5,000 for CIFAR (He 2015), 10% for digits,
    #                              min(10,000, 10%) for an ImageFolder (whose val/ folder is the test split)
    split_seed: int = 0  # fixes the train/val(/test) split, independent of the training seed
    crop_pad: int = 0  # pad-and-random-crop augmentation (4 for CIFAR, He 2015 Section 4.2); 0: off
    flip: bool = False  # random horizontal flips
    # ImageFolder only (He 2015, Section 3.4): decoded and augmented per image in DataLoader workers.
    scale: list[int] = field(default_factory=lambda: [256, 480])  # training: shorter side resized at random in [lo, hi]
    crop: int = 224  # training: random crop of crop x crop; evaluation: the center crop
    eval_resize: int = 256  # evaluation: shorter side resized to this before the center crop
    mean_images: int = 10_000  # training images (a seeded sample) averaged into the per-pixel mean image
    workers: int | None = None  # DataLoader worker processes; None: min(32, CPU cores - 1); 0: in the training process

    def __post_init__(self) -> None:
        _require(self.name in DATASETS, "data.name", f"{quote(self.name)} is not one of {', '.join(DATASETS)}")
        _require(self.val_size is None or self.val_size >= 1, "data.val_size", "must be at least 1")
        _require(self.crop_pad >= 0, "data.crop_pad", "must be >= 0")
        _require(self.crop > 0, "data.crop", "must be > 0")
        _require(
            len(self.scale) == 2 and self.crop <= self.scale[0] <= self.scale[1],
            "data.scale",
            f"{quote(self.scale)} must be [lo, hi] with data.crop={self.crop} <= lo <= hi, e.g. [256, 480]",
        )
        _require(self.eval_resize >= self.crop, "data.eval_resize", f"{self.eval_resize} must be >= data.crop={self.crop}")
        _require(self.mean_images >= 1, "data.mean_images", "must be at least 1")
        _require(self.workers is None or self.workers >= 0, "data.workers", "must be >= 0 (0: no worker processes)")
        if self.name == "imagefolder":
            _require(bool(self.data_dir), "data.data_dir", "set it to the folder holding train/CLASS/*.jpg and val/CLASS/*.jpg")
            _require(not self.download, "data.download", "an ImageFolder cannot be downloaded; put it under data.data_dir")
            _require(self.crop_pad == 0, "data.crop_pad", "is for CIFAR; an ImageFolder is augmented by data.scale and data.crop")


@dataclass
class OptimConfig:
    """SGD as in He 2015, Section 3.4; every schedule is in iterations, as the paper states it."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 128
    max_steps: int = 64_000
    schedule: str = "step"  # step: lr x gamma at each milestone (CIFAR, Section 4.2) | plateau: when val_err stalls (ImageNet, 3.4)
    # lr x gamma at each: iterations (ints, e.g. [32000, 48000]) or fractions of max_steps (floats in (0, 1], e.g.
    # [0.5, 0.75], the paper's 32k and 48k of 64k), so that a shorter run (optim.max_steps=N) keeps its schedule
    milestones: list[Any] = field(default_factory=lambda: [0.5, 0.75])
    gamma: float = 0.1
    plateau_patience: int = 5  # evaluations without improvement before lr x gamma
    plateau_threshold: float = 0.0  # an improvement of val_err must exceed this many points (%) to count
    min_lr: float | None = None  # the plateau schedule stops dividing at this lr
    warmup_lr: float | None = None  # e.g. 0.01 for ResNet-110 (Section 4.2)
    warmup_steps: int = 0  # iterations at warmup_lr before lr (with warmup_until_err: the most)
    warmup_until_err: float | None = None  # end the warm-up once training error (%) is below this (80 for ResNet-110)

    def __post_init__(self) -> None:
        for name in ("lr", "batch_size", "max_steps"):
            _require(getattr(self, name) > 0, f"optim.{name}", "must be > 0")
        _require(self.momentum >= 0 and self.weight_decay >= 0, "optim", "momentum and weight_decay must be >= 0")
        _require(self.schedule in SCHEDULES, "optim.schedule", f"{quote(self.schedule)} is not one of {', '.join(SCHEDULES)}")
        ints = all(type(m) is int for m in self.milestones)
        fractions = all(type(m) is float and 0 < m <= 1 for m in self.milestones)
        _require(
            (ints or fractions) and self.milestones == sorted(self.milestones) and all(m > 0 for m in self.milestones),
            "optim.milestones",
            f"{quote(self.milestones)} must be increasing positive iterations (e.g. [32000, 48000]) or increasing "
            "fractions of optim.max_steps (e.g. [0.5, 0.75])",
        )
        _require(
            self.schedule == "step" or not self.milestones,
            "optim.milestones",
            f"{quote(self.milestones)}: the plateau schedule has no milestones; set optim.milestones=[]",
        )
        _require(0 < self.gamma < 1, "optim.gamma", f"{self.gamma} must be between 0 and 1")
        _require(self.plateau_patience >= 1, "optim.plateau_patience", "must be at least 1 evaluation")
        _require(self.plateau_threshold >= 0, "optim.plateau_threshold", "must be >= 0 (points of val_err, %)")
        _require(self.min_lr is None or 0 < self.min_lr <= self.lr, "optim.min_lr", f"must be in (0, optim.lr={self.lr}]")
        _require(self.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0")
        _require(
            (self.warmup_lr is None) == (self.warmup_steps == 0),
            "optim.warmup_lr",
            "set warmup_lr and warmup_steps together (e.g. 0.01 for 400 iterations)",
        )
        _require(
            self.warmup_until_err is None or (self.warmup_steps > 0 and 0 < self.warmup_until_err <= 100),
            "optim.warmup_until_err",
            f"{self.warmup_until_err} must be a training error in (0, 100] with warmup_lr and warmup_steps (the cap) set",
        )


    @property
    def milestone_steps(self) -> list[int]:
        """The milestones as iterations: a fraction f of ``max_steps`` is iteration round(f x max_steps) (Python's
        round, halves to even), at least 1."""
        return [m if type(m) is int else max(1, round(m * self.max_steps)) for m in self.milestones]


@dataclass
class TrainConfig:
    seed: int = 0
    eval_every: int = 1000  # iterations between train/val/test error points of the curves; the last is at max_steps
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # The fast path (README, "Fast training"). precision: "32" (fp32, the paper's) | "bf16-mixed" (bfloat16 autocast,
    # fp32 weights and optimizer). compile: the training step's forward and backward through torch.compile, as CUDA
    # graphs on a GPU (mode reduce-overhead); the same function, in fewer launches. Both change the run's numbers
    # in the last bits, so they are part of the run's config (and a study's settings).
    precision: Any = "32"  # YAML reads 32 as a number: either is taken, and kept as the text "32"
    compile: bool = False

    def __post_init__(self) -> None:
        _require(self.eval_every > 0, "train.eval_every", "must be > 0")
        if type(self.precision) is int and str(self.precision) in PRECISIONS:
            self.precision = str(self.precision)
        _require(
            isinstance(self.precision, str) and self.precision in PRECISIONS,
            "train.precision",
            f"{quote(self.precision)} is not one of {', '.join(PRECISIONS)}",
        )
        _require(
            isinstance(self.device, str) and DEVICES.fullmatch(self.device) is not None,
            "train.device",
            f"{quote(self.device)} is not one of auto, cpu, cuda, cuda:N, mps",
        )


@dataclass
class TrackConfig:
    """Where records go and how W&B mirrors them."""

    runs_dir: str = "runs"  # local run records: the source of truth for analysis
    study: str = "adhoc"  # folder under runs_dir and the W&B group
    wandb: str = "auto"  # auto: online when an API key is configured, else offline | online | offline | disabled
    project: str = "lab"
    entity: str | None = None
    # write through a study or run folder that is a symbolic link (refused otherwise: lab.records.check_folder)
    follow_symlinks: bool = False

    def __post_init__(self) -> None:
        _require(self.wandb in WANDB_MODES, "track.wandb", f"{quote(self.wandb)} is not one of {', '.join(WANDB_MODES)}")
        check_name(self.study, "track.study")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    track: TrackConfig = field(default_factory=TrackConfig)

    def __post_init__(self) -> None:
        steps = self.optim.milestone_steps
        _require(
            all(a < b for a, b in zip(steps, steps[1:])),
            "optim.milestones",
            f"{quote(self.optim.milestones)} of optim.max_steps={self.optim.max_steps} fall on the same iterations "
            f"{steps}; give fewer milestones or more iterations",
        )
        _require(
            not self.optim.milestones or self.optim.milestone_steps[-1] <= self.optim.max_steps,
            "optim.milestones",
            f"{quote(self.optim.milestones)} go past optim.max_steps={self.optim.max_steps}",
        )

    @property
    def run_name(self) -> str:
        m = self.model
        return nets.run_name(m.arch, m.depth, m.shortcut, self.train.seed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- mapping plain data (YAML) onto the dataclasses, with errors that name the field ---


def _check_type(value: Any, tp: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _check_type(value, inner, name)
    if tp is Any:
        _check_numbers(value, name)
        return value
    if origin is dict:
        _require(isinstance(value, dict), name, f"expected a mapping, got {quote(value)}")
        _, inner = typing.get_args(tp)
        return {k: _check_type(v, inner, f"{name}.{_key(k)}") for k, v in value.items()}
    if origin is list:
        _require(isinstance(value, list), name, f"expected a list, got {quote(value)}")
        (inner,) = typing.get_args(tp)
        return [_check_type(v, inner, f"{name}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, name)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            raise ConfigError(f"{name}: {quote(value)} is too large") from None
    ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    _require(ok, name, f"expected {tp.__name__}, got {type(value).__name__} {quote(value)}")
    _check_numbers(value, name)  # a number, or a list or mapping of values of any type
    return value


def _number_problem(value: Any) -> str | None:
    """What is wrong with a number no field can take: NaN, infinity, an integer past 64 bits."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    if isinstance(value, int) and not isinstance(value, bool) and not INT_RANGE[0] <= value <= INT_RANGE[1]:
        return f"{quote(value)} is too {'large' if value > 0 else 'small'} (a 64-bit integer at most)"
    return None


def _check_numbers(value: Any, name: str) -> None:
    """Refuse NaN, infinity and huge integers anywhere in ``value``, naming where (``grid.optim.lr[1]``)."""
    stack, seen = [(value, name)], set()
    while stack:
        item, where = stack.pop()
        problem = _number_problem(item)
        if problem:
            raise ConfigError(f"{where}: {problem}")
        if isinstance(item, (dict, list)) and id(item) not in seen:  # aliased values are checked once
            seen.add(id(item))
            children = [(v, f"{where}.{_key(k)}") for k, v in item.items()] if isinstance(item, dict) else [
                (v, f"{where}[{i}]") for i, v in enumerate(item)
            ]
            stack.extend(reversed(children))  # the first problem in reading order is the one named


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from nested dicts, rejecting unknown keys, missing required ones and wrong types by name."""
    where = prefix or "config"
    _require(isinstance(data, dict), where, f"expected a mapping, got {type(data).__name__} {quote(data)}")
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    known = [f.name for f in fields]

    def dotted(key: Any) -> str:
        return f"{prefix}.{_key(key)}" if prefix else _key(key)

    for key in data:
        _require(key in known, dotted(key), f"unknown key (known here: {', '.join(known)})")
    for f in fields:
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        _require(not required or f.name in data, dotted(f.name), "required, missing")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _check_type(value, hints[key], dotted(key))
    return cls(**kwargs)


class _Refused(Exception):
    """YAML refused while it is read (too deep, too many values, a number too large); ``line`` says where."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class LabLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, plus: ``1e-3`` is a float (YAML 1.1 wants ``1.0e-3``); nesting deeper than
    ``MAX_DEPTH``, more than ``MAX_VALUES`` values and integers Python will not read are refused as they are
    met, so a hostile file costs a few seconds at most. ``yaml.SafeLoader`` itself is left as it is."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            line = self.peek_event().start_mark.line + 1
            if self.depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep; a recipe or sweep needs a few", line)
            if not self.check_event(yaml.AliasEvent):
                self.nodes += 1
                if self.nodes > MAX_VALUES:
                    raise _Refused(f"more than {MAX_VALUES:,} values; a recipe or sweep has a few dozen", line)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_yaml_int(self, node: Any) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # past sys.get_int_max_str_digits()
            digits = sum(c.isdigit() for c in node.value)
            raise _Refused(f"an integer of {digits} digits is too large", node.start_mark.line + 1) from None


LabLoader.add_constructor("tag:yaml.org,2002:int", LabLoader.construct_yaml_int)
LabLoader.add_implicit_resolver(  # 1e-3, 5E+4, -2e5, 1.5e3, .5e1: what Python and YAML 1.2 call floats
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else []


def _check_size(root: yaml.Node) -> None:
    """Refuse a document that expands to more than ``MAX_VALUES`` values (an alias counts at the size of
    what it names) or holds an alias inside its own anchor, before anything is built from it.

    Sizes are memoised per node of the composed graph, so a "billion laughs" of nine levels costs nine
    levels of counting, not a billion.
    """
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_ids.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_VALUES:  # the composer counted at most MAX_VALUES nodes: aliases make the rest
                raise _Refused(f"YAML aliases expand to more than {MAX_VALUES:,} values; write the values out")
        elif key in open_ids:
            raise _Refused("a YAML alias refers to the value it is part of; write the values out", node.start_mark.line + 1)
        elif key not in sizes:
            open_ids.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(_children(node)))


def _load(text: str) -> Any:
    """One YAML document, read with :class:`LabLoader` and checked by :func:`_check_size` before it is built."""
    loader = LabLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A PyYAML error as one short line: where and what."""
    if isinstance(e, yaml.reader.ReaderError):
        char = e.character if isinstance(e.character, int) else ord(e.character)
        return f": character U+{char:04X} at offset {e.position} is not allowed in YAML"
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem, context = getattr(e, "problem", None), getattr(e, "context", None)
    if problem and context and problem.startswith("but "):  # "expected a single document ... but found another"
        problem = f"{context} {problem}"
    problem = " ".join(str(problem or context or e).split())
    problem = problem if len(problem) <= 160 else problem[:157] + "..."
    return f" (line {mark.line + 1}): {problem}" if mark else f": {problem}"


def parse_override(text: str) -> tuple[str, Any]:
    """``model.depth=56`` -> (``model.depth``, 56); the value is read as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {quote(text)}: expected KEY=VALUE, e.g. model.depth=56")
    try:
        return key.strip(), _load(value)
    except _Refused as e:
        raise ConfigError(f"override {quote(text)}: {e}") from None
    except yaml.YAMLError:
        raise ConfigError(f"override {quote(text)}: value is not valid YAML") from None


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys in a nested dict (a copy); type and name checks happen in :func:`from_dict`."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for key, value in overrides.items():
        section, _, name = key.partition(".") if isinstance(key, str) else ("", "", "")
        if not name:
            raise ConfigError(f"{_key(key)}: overrides name a field as SECTION.FIELD, e.g. model.depth")
        node = data.setdefault(section, {})
        _require(isinstance(node, dict), _key(section), f"expected a mapping, got {quote(node)}")
        node[name] = value
    return data


def _kind(data: Any) -> str:
    """What a YAML document is when it is not a mapping, in words."""
    if isinstance(data, list):
        return "a list"
    if isinstance(data, str):
        return f"the text {quote(data, 40)}"
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        return f"the number {quote(data, 40)}"
    return f"{type(data).__name__} {quote(data, 40)}"


def read_yaml(
    path: str | Path,
    example: str = f"{RECIPE_EXAMPLE} (a recipe) or {{recipe: digits, grid: {{model.depth: [20, 56]}}}} (a sweep)",
) -> dict[str, Any]:
    """A recipe or sweep file: a YAML mapping, read as UTF-8. What cannot be one is refused in a line that
    names the file: no such file, a folder, unreadable, over ``MAX_FILE_BYTES``, not UTF-8, not valid
    YAML, nested or aliased past the limits, empty, not a mapping (``example`` shows one)."""
    path = Path(path)
    try:
        if not path.exists():
            raise ConfigError(f"{path}: no such file")
        if path.is_dir():
            raise ConfigError(f"{path}: a folder, not a YAML file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(
                f"{path}: {size / 1e6:.1f} MB, too large for a recipe or sweep (at most {MAX_FILE_BYTES / 1e6:g} MB); "
                f"is it the right file?"
            )
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); save it as UTF-8") from None
    try:
        data = _load(text)
    except _Refused as e:
        raise ConfigError(f"{path}: line {e.line}: {e}" if e.line else f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML{_yaml_problem(e)}") from None
    if data is None:
        raise ConfigError(f"{path}: empty; expected a mapping such as {example}")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping such as {example}, got {_kind(data)}")
    return data


def make_config(data: dict[str, Any], overrides: dict[str, Any] | None = None, source: str = "") -> Config:
    """Validate plain data (plus dotted overrides) into a :class:`Config`; errors are prefixed with ``source``."""
    try:
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping such as {RECIPE_EXAMPLE}, got {_kind(data)}")
        return from_dict(Config, apply_overrides(data, overrides or {}))
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}" if source else str(e)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read a recipe from ``experiments/`` and apply overrides such as ``{"model.depth": 56}``."""
    return make_config(read_yaml(path, RECIPE_EXAMPLE), overrides, source=str(path))


def canonical(config: Config) -> dict[str, Any]:
    """What makes two configs the same run: ``to_dict()`` with milestones as iterations (``[0.75]`` of 160 is
    ``[120]``, as a run recorded before fractions existed says) and without ``track`` (where records go and how
    W&B mirrors them: not the run's result)."""
    data = config.to_dict()
    data["optim"]["milestones"] = config.optim.milestone_steps
    del data["track"]
    return data


def flat(config: Config | dict[str, Any]) -> dict[str, Any]:
    """``{"model.depth": 56, ...}``: a config's fields by their dotted names (what overrides and sweeps say)."""
    data = config.to_dict() if isinstance(config, Config) else config
    return {f"{section}.{key}": value for section, fields in data.items() if isinstance(fields, dict)
            for key, value in fields.items()}


def config_yaml(data: dict[str, Any]) -> str:
    """A config (or any plain data) as the YAML that ``config.yaml`` and ``--print-config`` show, in field order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)


# Fields that apply to some runs only: what a run's W&B config leaves out where they do not apply (W&B's filters
# and group-by then offer what the study's runs actually vary).
IMAGEFOLDER_ONLY = ("scale", "crop", "eval_resize", "mean_images", "workers")  # decoded per image (He 2015, 3.4)
ON_DISK_ONLY = ("data_dir", "download", "verify_md5")  # CIFAR's archive and ImageFolder's folder; digits is bundled
TENSOR_ONLY = ("crop_pad",)  # batched augmentation of in-memory tensors (digits, CIFAR)
PLATEAU_ONLY = ("plateau_patience", "plateau_threshold", "min_lr")
STEP_ONLY = ("milestones",)
WARMUP_ONLY = ("warmup_lr", "warmup_until_err")


def applicable(config: Config) -> dict[str, Any]:
    """``config.to_dict()`` less the fields that do not apply to this run: ImageFolder's decoding on digits or
    CIFAR, a data folder on the bundled digits, the plateau schedule's settings on a step schedule, and so on."""
    data = config.to_dict()
    name, optim = config.data.name, config.optim
    drop = {"data": set(), "optim": set()}
    if name != "imagefolder":
        drop["data"] |= set(IMAGEFOLDER_ONLY)
    else:
        drop["data"] |= set(TENSOR_ONLY) | {"download"}
    if name == "digits":
        drop["data"] |= set(ON_DISK_ONLY)
    drop["optim"] |= set(PLATEAU_ONLY) if optim.schedule == "step" else set(STEP_ONLY)
    if not optim.warmup_steps:
        drop["optim"] |= set(WARMUP_ONLY) | {"warmup_steps"}
    for section, keys in drop.items():
        data[section] = {k: v for k, v in data[section].items() if k not in keys}
    return data
