"""The hardened YAML loader (``read_yaml``): recipes, sweeps and run records' ``config.yaml`` are read with sizes,
nesting, aliases, tags and integers bounded, and every refusal names the file and the line."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from lab.config.errors import ConfigError, quote


RECIPE_EXAMPLE = "model: {arch: resnet, depth: 20}"
# Hostile input is cheap: a recipe or sweep file is a few KB of a few levels; anything far beyond is refused
# while it is read, before it can cost minutes, gigabytes or a traceback.
MAX_FILE_BYTES = 1_000_000
MAX_VALUES = 10_000  # values a YAML document may expand to, counting every alias at its full size
MAX_DEPTH = 100  # levels of nesting


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
