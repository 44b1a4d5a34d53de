"""Config errors: ``ConfigError`` (its message names the field and the fix), how input is quoted in one, and what
makes a name one folder name."""
from __future__ import annotations

import math
import typing
from typing import Any


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


# pydantic's error types (https://docs.pydantic.dev/latest/errors/validation_errors/) -> what lab says was expected
_EXPECTED = {"int_type": "int", "float_type": "float", "string_type": "str", "bool_type": "bool", "list_type": "list",
             "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping"}


def from_pydantic(error: Any, model: type, prefix: str = "") -> ConfigError:
    """The first error of a pydantic ``ValidationError`` (validating ``model``) as lab's one line naming the field:
    ``model.dept: unknown key (known here: arch, depth, shortcut, style)``, ``train.seed: expected int, got bool
    True``; a ``ConfigError`` raised by a model's own checks comes back as it was raised."""
    first = error.errors(include_url=False)[0]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):
        return cause
    loc, kind, value = first["loc"], first["type"], first.get("input")
    names = [prefix] if prefix else []
    for part in loc:
        if part == "[key]":  # a mapping's key of the wrong type: named by the key itself
            continue
        names.append(f"[{part}]" if isinstance(part, int) else _key(part))
    where = ".".join(names).replace(".[", "[") or "config"
    if kind == "extra_forbidden":
        return ConfigError(f"{where}: unknown key (known here: {', '.join(_fields_at(model, loc[:-1]))})")
    if kind == "missing":
        return ConfigError(f"{where}: required, missing")
    if kind == "float_type" and isinstance(value, int) and not isinstance(value, bool):
        return ConfigError(f"{where}: {quote(value)} is too large")  # past what a float holds (1e308)
    if kind in _EXPECTED:
        return ConfigError(f"{where}: expected {_EXPECTED[kind]}, got {type(value).__name__} {quote(value)}")
    return ConfigError(f"{where}: {first['msg']}, got {quote(value)}")


def _fields_at(model: type, loc: tuple) -> list[str]:
    """The field names of the model found at ``loc`` inside ``model`` (a section of a config, say)."""
    for part in loc:
        model = model.model_fields[part].annotation
    return list(model.model_fields)
