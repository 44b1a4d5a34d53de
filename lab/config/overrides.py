"""``SECTION.FIELD=VALUE`` overrides of the command line, parsed as YAML values and applied to a recipe's data."""
from __future__ import annotations

from typing import Any

import yaml

from lab.config.errors import ConfigError, _key, _require, quote
from lab.config.loader import _Refused, _load


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
    """Set dotted keys in a nested dict (a copy); type and name checks happen in ``lab.config.schema.from_dict``."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for key, value in overrides.items():
        section, _, name = key.partition(".") if isinstance(key, str) else ("", "", "")
        if not name:
            raise ConfigError(f"{_key(key)}: overrides name a field as SECTION.FIELD, e.g. model.depth")
        node = data.setdefault(section, {})
        _require(isinstance(node, dict), _key(section), f"expected a mapping, got {quote(node)}")
        node[name] = value
    return data
