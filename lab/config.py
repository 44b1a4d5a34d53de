"""Typed configuration: one dataclass per concern; YAML maps onto them and is validated on load.

Every error is a :class:`ConfigError` whose message names the field, e.g.
``experiments/digits.yaml: model.depth: 57 is not 6n+2 ...``.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab import nets

DATASETS = ("digits", "cifar10", "cifar100", "imagefolder")
SCHEDULES = ("step", "plateau")
WANDB_MODES = ("auto", "online", "offline", "disabled")


class ConfigError(ValueError):
    """A configuration or sweep spec that cannot be used; the message names the field and the fix."""


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{name}: {message}")


@dataclass
class ModelConfig:
    """The network: what a depth study varies."""

    arch: str = "resnet"  # plain | resnet
    depth: int = 20  # weighted layers, 6n+2
    shortcut: str = "A"  # A: zero-pad identity, B: projections where shapes change, C: all projections
    style: str = "cifar"  # cifar: 6n+2 layers (Section 4.2) | imagenet: 18/34/50/101/152 (Table 1)

    def __post_init__(self) -> None:
        _require(self.arch in nets.ARCHS, "model.arch", f"{self.arch!r} is not one of {', '.join(nets.ARCHS)}")
        _require(
            self.shortcut in nets.SHORTCUTS,
            "model.shortcut",
            f"{self.shortcut!r} is not one of {', '.join(nets.SHORTCUTS)}",
        )
        _require(self.style in nets.STYLES, "model.style", f"{self.style!r} is not one of {', '.join(nets.STYLES)}")
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
        _require(self.name in DATASETS, "data.name", f"{self.name!r} is not one of {', '.join(DATASETS)}")
        _require(self.val_size is None or self.val_size >= 1, "data.val_size", "must be at least 1")
        _require(self.crop_pad >= 0, "data.crop_pad", "must be >= 0")
        _require(self.crop > 0, "data.crop", "must be > 0")
        _require(
            len(self.scale) == 2 and self.crop <= self.scale[0] <= self.scale[1],
            "data.scale",
            f"{self.scale} must be [lo, hi] with data.crop={self.crop} <= lo <= hi, e.g. [256, 480]",
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
    milestones: list[int] = field(default_factory=lambda: [32_000, 48_000])  # lr /= 10 at each
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
        _require(self.schedule in SCHEDULES, "optim.schedule", f"{self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        _require(
            self.milestones == sorted(self.milestones) and all(m > 0 for m in self.milestones),
            "optim.milestones",
            f"{self.milestones} must be increasing positive iterations",
        )
        _require(
            self.schedule == "step" or not self.milestones,
            "optim.milestones",
            f"{self.milestones}: the plateau schedule has no milestones; set optim.milestones=[]",
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


@dataclass
class TrainConfig:
    seed: int = 0
    eval_every: int = 1000  # iterations between train/val/test error points of the curves
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps

    def __post_init__(self) -> None:
        _require(self.eval_every > 0, "train.eval_every", "must be > 0")


@dataclass
class TrackConfig:
    """Where records go and how W&B mirrors them."""

    runs_dir: str = "runs"  # local run records: the source of truth for analysis
    study: str = "adhoc"  # folder under runs_dir and the W&B group
    wandb: str = "auto"  # auto: online when an API key is configured, else offline | online | offline | disabled
    project: str = "lab"
    entity: str | None = None

    def __post_init__(self) -> None:
        _require(self.wandb in WANDB_MODES, "track.wandb", f"{self.wandb!r} is not one of {', '.join(WANDB_MODES)}")
        _require(bool(self.study) and "/" not in self.study, "track.study", f"{self.study!r} is not a folder name")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    track: TrackConfig = field(default_factory=TrackConfig)

    def __post_init__(self) -> None:
        _require(
            self.optim.max_steps % self.train.eval_every == 0,
            "train.eval_every",
            f"optim.max_steps={self.optim.max_steps} must be a multiple of it, so that the curves end at the last iteration",
        )
        _require(
            not self.optim.milestones or self.optim.milestones[-1] <= self.optim.max_steps,
            "optim.milestones",
            f"{self.optim.milestones} go past optim.max_steps={self.optim.max_steps}",
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
        return value
    if origin is dict:
        _require(isinstance(value, dict), name, f"expected a mapping, got {value!r}")
        _, inner = typing.get_args(tp)
        return {k: _check_type(v, inner, f"{name}.{k}") for k, v in value.items()}
    if origin is list:
        _require(isinstance(value, list), name, f"expected a list, got {value!r}")
        (inner,) = typing.get_args(tp)
        return [_check_type(v, inner, f"{name}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, name)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    ok = isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    _require(ok, name, f"expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from nested dicts, rejecting unknown keys and wrong types by name."""
    where = prefix or "config"
    _require(isinstance(data, dict), where, f"expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        dotted = f"{prefix}.{key}" if prefix else str(key)
        _require(key in known, dotted, f"unknown key (known here: {', '.join(known)})")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _check_type(value, hints[key], f"{prefix}.{key}" if prefix else key)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[str, Any]:
    """``model.depth=56`` -> (``model.depth``, 56); the value is read as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. model.depth=56")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: value is not valid YAML") from None


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys in a nested dict (a copy); type and name checks happen in :func:`from_dict`."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if not name:
            raise ConfigError(f"{key}: overrides name a field as SECTION.FIELD, e.g. model.depth")
        node = data.setdefault(section, {})
        _require(isinstance(node, dict), section, f"expected a mapping, got {node!r}")
        node[name] = value
    return data


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None


def make_config(data: dict[str, Any], overrides: dict[str, Any] | None = None, source: str = "") -> Config:
    """Validate plain data (plus dotted overrides) into a :class:`Config`; errors are prefixed with ``source``."""
    try:
        return from_dict(Config, apply_overrides(data, overrides or {}))
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}" if source else str(e)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read a recipe from ``experiments/`` and apply overrides such as ``{"model.depth": 56}``."""
    return make_config(read_yaml(path), overrides, source=str(path))
