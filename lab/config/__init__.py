"""A run's configuration, without torch: ``schema`` (one pydantic model per concern, validated as it is made:
errors name the field), ``loader`` (the hardened YAML loader), ``overrides`` (``SECTION.FIELD=VALUE``), ``errors``
(``ConfigError``, quoting input in one line, folder names). Their names are here: ``from lab.config import ...``.
"""
from __future__ import annotations

from lab.config.errors import ConfigError, _key, _require, check_name, name_problem, quote  # noqa: F401
from lab.config.loader import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES, RECIPE_EXAMPLE, read_yaml  # noqa: F401
from lab.config.overrides import apply_overrides, parse_override  # noqa: F401
from lab.config.schema import (  # noqa: F401
    DATASETS, DEVICES, INT_RANGE, PRECISIONS, SCHEDULES, WANDB_MODES, Config, DataConfig, ModelConfig, OptimConfig,
    Section, TrackConfig, TrainConfig, applicable, canonical, config_yaml, flat, from_dict, load_config, make_config,
)
