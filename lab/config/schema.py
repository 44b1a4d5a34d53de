"""Typed configuration: one pydantic model per concern; YAML maps onto them and is validated on load.

Every error is a :class:`ConfigError` whose message names the field, e.g.
``experiments/digits.yaml: model.depth: 57 is not 6n+2 ...``: :func:`from_dict` turns pydantic's first error
into one such line (``lab.config.errors.from_pydantic``), and the checks between fields raise it directly.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lab.config.errors import ConfigError, _key, _require, check_name, from_pydantic, quote
from lab.config.loader import RECIPE_EXAMPLE, _kind, read_yaml
from lab.config.overrides import apply_overrides
from lab.nets import names as nets  # no torch: reading a config loads none


DATASETS = ("digits", "cifar10", "cifar100", "imagefolder")
SCHEDULES = ("step", "plateau")
WANDB_MODES = ("auto", "online", "offline", "disabled")
PRECISIONS = ("32", "bf16-mixed")  # train.precision: Lightning's names
DEVICES = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")  # what train.device may say
INT_RANGE = (-(2**63), 2**63 - 1)  # integers a field takes (seeds, iterations, sizes)


class Section(BaseModel):
    """A part of a config (or a sweep spec): no key it does not know, no conversion but int to float (``lr: 1`` is
    1.0; ``"20"`` is not a depth, ``true`` not a seed); the checks between its fields in ``check``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="after")
    def _checked(self) -> "Section":
        self.check()
        return self

    def check(self) -> None:
        """Checks across this section's fields: a :class:`ConfigError` naming the field."""


class ModelConfig(Section):
    """The network: what a depth study varies. Fields a family does not read stay at their defaults
    (``lab.nets.names.check``)."""

    arch: str = "resnet"  # plain | resnet: the family's layers without or with their shortcuts
    depth: int = 20  # weighted layers: 6n+2 (resnet, preact basic), 9n+2 (preact bottleneck, resnext), 6N+4 (wide)
    shortcut: str = "A"  # resnet: A: zero-pad identity, B: projections where shapes change, C: all projections
    style: str = "cifar"  # resnet: cifar: 6n+2 layers (Section 4.2) | imagenet: 18/34/50/101/152 (Table 1)
    family: str = "resnet"  # resnet: He 2015 | preact: He 2016 | wide: WRN-d-k | resnext: ResNeXt-29 CxDd
    block: str = "auto"  # preact: basic | bottleneck | auto: basic up to 110 layers, bottleneck from 164 (He 2016)
    unit: str = "full_preact"  # preact: He 2016 Figure 4's original | bn_after_add | relu_before_add | relu_only_preact | full_preact
    width: int = 1  # wide: the widening factor k (WRN-28-10: 10)
    dropout: float = 0.0  # wide: dropout between a block's convs (0.3 on CIFAR in the paper)
    cardinality: int = 8  # resnext: C, groups of the 3x3 convs
    group_width: int = 64  # resnext: d, channels of each group in the first stage (doubling per stage)
    gate_bias: float = 0.0  # resnet, gated shortcuts: the gate's initial bias (He 2016 Table 1 tries 0 to -6)
    stochastic_depth: float = 1.0  # resnet: p_L, the last block's survival (Huang 2016: 0.5); 1: none dropped
    zero_init_residual: bool = False  # resnet, resnext: each block's last BN starts at 0 (timm's default; not the papers')
    stem: str = "default"  # resnet, imagenet style: default (7x7) | deep (ResNet-C: three 3x3)
    avg_down: bool = False  # resnet, imagenet style: ResNet-D's average pool before a strided projection

    def check(self) -> None:
        try:
            nets.check(self)
        except nets.NetError as e:
            raise ConfigError(e.text(quote)) from None


class DataConfig(Section):
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
    scale: list[int] = Field(default_factory=lambda: [256, 480])  # training: shorter side resized at random in [lo, hi]
    crop: int = 224  # training: random crop of crop x crop; evaluation: the center crop
    eval_resize: int = 256  # evaluation: shorter side resized to this before the center crop
    mean_images: int = 10_000  # training images (a seeded sample) averaged into the per-pixel mean image
    workers: int | None = None  # DataLoader worker processes; None: min(32, CPU cores - 1); 0: in the training process

    def check(self) -> None:
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


class OptimConfig(Section):
    """SGD as in He 2015, Section 3.4; every schedule is in iterations, as the paper states it."""

    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False  # Nesterov momentum (WRN, stochastic depth); the He papers' SGD has none
    weight_decay: float = 1e-4
    batch_size: int = 128
    max_steps: int = 64_000
    schedule: str = "step"  # step: lr x gamma at each milestone (CIFAR, Section 4.2) | plateau: when val_err stalls (ImageNet, 3.4)
    # lr x gamma at each: iterations (ints, e.g. [32000, 48000]) or fractions of max_steps (floats in (0, 1], e.g.
    # [0.5, 0.75], the paper's 32k and 48k of 64k), so that a shorter run (optim.max_steps=N) keeps its schedule
    milestones: list[Any] = Field(default_factory=lambda: [0.5, 0.75])
    gamma: float = 0.1
    plateau_patience: int = 5  # evaluations without improvement before lr x gamma
    plateau_threshold: float = 0.0  # an improvement of val_err must exceed this many points (%) to count
    min_lr: float | None = None  # the plateau schedule stops dividing at this lr
    warmup_lr: float | None = None  # e.g. 0.01 for ResNet-110 (Section 4.2)
    warmup_steps: int = 0  # iterations at warmup_lr before lr (with warmup_until_err: the most)
    warmup_until_err: float | None = None  # end the warm-up once training error (%) is below this (80 for ResNet-110)

    def check(self) -> None:
        for name in ("lr", "batch_size", "max_steps"):
            _require(getattr(self, name) > 0, f"optim.{name}", "must be > 0")
        _require(self.momentum >= 0 and self.weight_decay >= 0, "optim", "momentum and weight_decay must be >= 0")
        _require(not self.nesterov or self.momentum > 0, "optim.nesterov", "needs optim.momentum > 0")
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


class TrainConfig(Section):
    seed: int = 0
    eval_every: int = 1000  # iterations between train/val/test error points of the curves; the last is at max_steps
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # The fast path (README, "Fast training"). precision: "32" (fp32, the paper's) | "bf16-mixed" (bfloat16 autocast,
    # fp32 weights and optimizer). compile: the training step's forward and backward through torch.compile, as CUDA
    # graphs on a GPU (mode reduce-overhead); the same function, in fewer launches. Both change the run's numbers
    # in the last bits, so they are part of the run's config (and a study's settings).
    precision: Any = "32"  # YAML reads 32 as a number: either is taken, and kept as the text "32"
    compile: bool = False

    def check(self) -> None:
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


class TrackConfig(Section):
    """Where records go and how W&B mirrors them."""

    runs_dir: str = "runs"  # local run records: the source of truth for analysis
    study: str = "adhoc"  # folder under runs_dir and the W&B group
    wandb: str = "auto"  # auto: online when an API key is configured, else offline | online | offline | disabled
    project: str = "lab"
    entity: str | None = None
    # write through a study or run folder that is a symbolic link (refused otherwise: lab.records.check_folder)
    follow_symlinks: bool = False

    def check(self) -> None:
        _require(self.wandb in WANDB_MODES, "track.wandb", f"{quote(self.wandb)} is not one of {', '.join(WANDB_MODES)}")
        check_name(self.study, "track.study")


class Config(Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    track: TrackConfig = Field(default_factory=TrackConfig)

    def check(self) -> None:
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
        return nets.run_name(self.model, self.train.seed)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


# --- mapping plain data (YAML) onto the models, with errors that name the field ---


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
            children = [(v, f"{where}.{_key(k)}" if where else _key(k)) for k, v in item.items()] if isinstance(
                item, dict) else [(v, f"{where}[{i}]") for i, v in enumerate(item)]
            stack.extend(reversed(children))  # the first problem in reading order is the one named


def from_dict(cls: type[BaseModel], data: Any, prefix: str = "") -> Any:
    """Validate ``data`` (nested dicts, as YAML gives them) into model ``cls``: an unknown key, a missing required
    one, a wrong type or a number no field takes (NaN, infinity, past 64 bits) is a :class:`ConfigError` naming
    the field (under ``prefix``)."""
    where = prefix or "config"
    _require(isinstance(data, dict), where, f"expected a mapping, got {type(data).__name__} {quote(data)}")
    _check_numbers(data, prefix)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise from_pydantic(e, cls, prefix) from None


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
