"""The layout holds (issue 17): no import cycles among lab's and analysis's modules, no module importing a layer
above its own, and reading a config or a run record loads no torch.

The import graph is read from the code (``ast``: every ``import`` and ``from ... import``, also inside functions,
where lab defers its heavy imports), so a cycle hidden in a function body counts too.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("lab", "analysis")
# Lower layers never import higher ones: what a record or a config is must not depend on how runs are trained,
# swept or analysed.
NEVER = {
    "lab.config": ("lab.nets.resnet", "lab.data", "lab.records", "lab.train", "lab.sweep",
                   "lab.bench", "lab.cli", "analysis"),
    "lab.records": ("lab.nets.resnet", "lab.data", "lab.train", "lab.sweep", "lab.bench",
                    "lab.cli", "analysis"),
    "lab.nets": ("lab.config", "lab.records", "lab.data", "lab.train", "lab.sweep", "lab.cli", "analysis"),
    "lab.data": ("lab.records", "lab.train", "lab.sweep", "lab.cli", "analysis"),
    "lab.sweep.spec": ("lab.train", "lab.sweep.coordinator", "lab.sweep.trial", "lab.cli", "analysis"),
    "lab.sweep.storage": ("lab.train", "lab.sweep.coordinator", "lab.sweep.trial", "lab.cli", "analysis"),
    "lab.sweep.protocol": ("lab.train", "lab.sweep.coordinator", "lab.sweep.trial", "lab.sweep.status", "lab.cli"),
    "lab.sweep.status": ("lab.train", "lab.sweep.coordinator", "lab.sweep.trial", "lab.cli"),
    # the study's state and its transitions: no trial process, no training
    "lab.sweep.ledger": ("lab.train", "lab.sweep.coordinator", "lab.sweep.running", "lab.sweep.trial", "lab.cli", "analysis"),
    "lab.sweep.params": ("lab.train", "lab.sweep.coordinator", "lab.sweep.running", "lab.sweep.trial", "lab.cli", "analysis"),
    "lab.train": ("lab.sweep", "lab.bench", "lab.cli", "analysis"),
    "analysis": ("lab.cli", "lab.sweep.coordinator", "lab.sweep.trial", "lab.bench"),
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that the module ``name`` (at ``path``) imports, anywhere in its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, name, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_graph_reader_finds_a_cycle_hidden_in_a_function():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]] and cycles({"a": {"b"}, "b": set()}) == []
    known = modules()
    assert "lab.cli.sweep" in imports(known["lab.cli"], "lab.cli", known)  # imported inside main only


def test_no_module_imports_itself_back_through_others():
    assert cycles(graph()) == []


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_no_module_imports_a_layer_above_its_own():
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items()
        for lower, above in NEVER.items() if within(module, lower)
        for target in targets if any(within(target, a) for a in above) and not within(target, lower)
    )
    assert wrong == []


def test_reading_a_config_or_a_run_record_loads_no_torch():
    code = ("import sys, lab.config, lab.records, lab.sweep.spec, lab.sweep.storage, lab.nets, lab.progress; "
            "print(sorted(m for m in ('torch', 'pytorch_lightning', 'wandb', 'optuna', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_a_refused_command_answers_without_loading_torch(tmp_path):
    """Bad input gets its one line at once (not after seconds of imports): an unknown sweep, a missing recipe."""
    code = ("import sys; from lab.cli import main; "
            "codes = [main(['sweep', 'no-such-sweep']), main(['train', 'no-such-recipe.yaml'])]; "
            "print(codes, sorted(m for m in ('torch', 'pytorch_lightning', 'wandb') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.strip() == "[2, 2] []", done.stdout + done.stderr
    assert done.stderr.count("\n") == 2, done.stderr


MAX_FILE_LINES, MAX_CLASS_LINES = 400, 200  # a file or a class past these does more than one thing


def test_no_module_or_class_is_too_long_to_read_as_one_thing():
    tests = {f"tests.{path.stem}": path for path in sorted((ROOT / "tests").rglob("*.py"))}
    long = []
    for name, path in {**modules(), **tests}.items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            long.append(f"{name}: {len(text.splitlines())} lines")
        long += [f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines" for node in ast.walk(ast.parse(text))
                 if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES]
    assert long == []
