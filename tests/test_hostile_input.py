"""Hostile input is cheap: a bad recipe, sweep or override costs one line on stderr and exit status 2, at once.

No traceback, no run folder, no gigabytes of error message: NaN and infinity, alias bombs, deep nesting,
huge numbers, non-UTF-8 bytes, empty files and unknown devices are refused while the config is read.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from lab.config import ConfigError, load_config, make_config, parse_override, read_yaml
from tests.conftest import TINY_RECIPE, lab, write_project

GRID = {"grid": {"model.depth": [8]}}
RECIPE = yaml.safe_dump(TINY_RECIPE)


def bomb(levels: int) -> str:
    """A flow list of ``levels`` anchors, each nine aliases of the one before: 9**levels values in a few hundred bytes."""
    items = ["&a0 [x, x, x, x, x, x, x, x, x]"] + [
        f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)
    ]
    return "[" + ", ".join(items) + "]"


def recipe_with(section: str, fields: str) -> str:
    """TINY_RECIPE with ``section`` replaced by the flow mapping ``{fields}``."""
    rest = {k: v for k, v in TINY_RECIPE.items() if k != section}
    return yaml.safe_dump(rest) + f"{section}: {{{fields}}}\n"


def one_line(message: str, *fragments: str) -> None:
    """An error message as the conventions want it: one short line that names the problem."""
    assert "\n" not in message and len(message) < 400, message[:3000]  # what it quotes of the input is capped
    for fragment in fragments:
        assert fragment in message, message


def one_line_error(result, *fragments: str) -> None:
    """The command refused bad input: status 2, one line on stderr, no traceback."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    one_line(lines[0], *fragments)


NON_UTF8 = b"model: {arch: r\xe9snet}\n"  # Latin-1, as an editor on Windows might save it
AT = NON_UTF8.index(0xE9)
MODEL_LINE = len(yaml.safe_dump({k: v for k, v in TINY_RECIPE.items() if k != "model"}).splitlines()) + 1


@pytest.mark.parametrize(
    "content,args,fragments",
    [
        (recipe_with("optim", "gamma: .nan, max_steps: 10, milestones: [8]"), [],
         ["bad.yaml: optim.gamma: nan is not a finite number"]),
        (RECIPE, ["optim.lr=.inf"], ["optim.lr: inf is not a finite number"]),
        ("", [], ["bad.yaml: empty; expected a mapping such as model: {"]),
        ("- model\n- optim\n", [], ["bad.yaml: expected a mapping such as model: {", "got a list"]),
        (NON_UTF8, [], [f"bad.yaml: not UTF-8 text (byte 0xe9 at offset {AT}); save it as UTF-8"]),
        (recipe_with("model", f"depth: {bomb(6)}"), [],
         ["bad.yaml: YAML aliases expand to more than 10,000 values; write the values out"]),
        (RECIPE, ["train.device=tpu"], ["train.device: 'tpu' is not one of auto, cpu, cuda, cuda:N, mps"]),
    ],
    ids=["nan", "override-inf", "empty", "a-list", "not-utf8", "alias-bomb", "device-tpu"],
)
def test_lab_train_refuses_hostile_recipes_in_one_line(tmp_path, lab_here, content, args, fragments):
    (tmp_path / "bad.yaml").write_bytes(content if isinstance(content, bytes) else content.encode())
    one_line_error(lab_here("train", "bad.yaml", *args, cwd=tmp_path), *fragments)
    assert not (tmp_path / "runs").exists()  # refused at load: no run folder, no config.yaml, no wandb-id


def test_lab_train_of_a_folder_names_it(tmp_path):
    (tmp_path / "experiments").mkdir()
    one_line_error(lab("train", "experiments", cwd=tmp_path), "experiments: a folder, not a YAML file")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "content,args,fragments",
    [
        (recipe_with("optim", "lr: 1e999, max_steps: 10, milestones: [8]"), [], ["bad.yaml: optim.lr: inf is not a finite number"]),
        (RECIPE, ["optim.warmup_until_err=-.inf"], ["optim.warmup_until_err: -inf is not a finite number"]),
        ("# a recipe, one day\n", [], ["bad.yaml: empty; expected a mapping such as model: {"]),
        ("42\n", [], ["bad.yaml: expected a mapping such as model: {", "got the number 42"]),
        (recipe_with("model", f"depth: {'[' * 1000}{']' * 1000}"), [], [f"bad.yaml: line {MODEL_LINE}: nested more than 100 levels deep"]),
        (f"model: [{', '.join(['8'] * 10_001)}]\n", [], ["bad.yaml: line 1: more than 10,000 values"]),
        (recipe_with("model", f"depth: 1{'0' * 5000}"), [], [f"bad.yaml: line {MODEL_LINE}: an integer of 5001 digits is too large"]),
        (recipe_with("model", f"depth: 0x{'f' * 5000}"), [], ["bad.yaml: model.depth: an integer of 6021 digits is too large"]),
        (RECIPE, [f"model.depth=0x{'f' * 5000}"], ["bad.yaml: model.depth: an integer of 6021 digits is too large"]),
        (RECIPE, [f"model.depth=1{'0' * 5000}"], ["override 'model.depth=1000", "...: an integer of 5001 digits is too large"]),
        (recipe_with("train", "device: 'cuda:x', eval_every: 5"), [], ["bad.yaml: train.device: 'cuda:x' is not one of auto"]),
        ("model: {arch: \"r\x00\"}\n", [], ["bad.yaml: not valid YAML: character U+0000 at offset 16 is not allowed in YAML"]),
        # what the messages quote of the input is capped, however big the input
        (recipe_with("model", f"depth: {bomb(4)}"), [], ["bad.yaml: model.depth: expected int, got list [['x', 'x'", "..."]),
        (recipe_with("model", f"arch: {'x' * 100_000}"), [], ["bad.yaml: model.arch: 'xxxx", "... is not one of plain, resnet"]),
        (recipe_with("model", f"{'k' * 1000}: 1"), [], ["bad.yaml: model.kkkk", "...: unknown key (known here: arch, depth"]),
        (RECIPE, [f"{'k' * 100_000}"], ["override 'kkkk", "...: expected KEY=VALUE"]),
        (RECIPE + "# padding\n" * 200_000, [], ["bad.yaml: 2.0 MB, too large for a recipe or sweep (at most 1 MB)"]),
    ],
    ids=["1e999", "override-minus-inf", "only-comments", "a-number", "deep-nesting", "too-many-values", "huge-int",
         "huge-hex-int", "override-huge-hex-int", "override-huge-int", "device-cuda-x", "nul-character", "aliased-list-quoted",
         "long-string-quoted", "long-key-quoted", "long-override-quoted", "2-MB-file"],
)
def test_recipes_and_overrides_refused_in_one_line(tmp_path, content, args, fragments):
    """As test_lab_train_refuses_hostile_recipes_in_one_line, in-process: `lab train` prints these same lines."""
    (tmp_path / "bad.yaml").write_bytes(content.encode())
    start = time.perf_counter()
    with pytest.raises(ConfigError) as refused:
        load_config(tmp_path / "bad.yaml", dict(parse_override(a) for a in args))
    assert time.perf_counter() - start < 5
    one_line(str(refused.value), *fragments)


def test_an_unreadable_file_is_named(tmp_path, monkeypatch):
    (tmp_path / "locked.yaml").write_text(RECIPE)

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)  # as root, chmod 000 would not stop the read
    with pytest.raises(ConfigError, match=r"locked.yaml: cannot read it: Permission denied$"):
        read_yaml(tmp_path / "locked.yaml")


@pytest.mark.parametrize(
    "sweep,args,fragments",
    [
        ("", [], ["study.yaml: empty; expected a mapping such as"]),
        ("grid: {model.depth: [8]}\n", [], ["study.yaml: recipe: required, missing"]),
        (b"recipe: tiny\n# \xff\xfe\ngrid: {model.depth: [8]}\n", [],
         ["study.yaml: not UTF-8 text (byte 0xff at offset 15); save it as UTF-8"]),
        ("recipe: tiny\ngrid: {model.depth: [8]}\nfixed: {optim.gamma: .nan}\n", [], ["optim.gamma: nan is not a finite number"]),
        ("recipe: tiny\ngrid: {optim.lr: [0.1, .inf]}\n", [], ["grid.optim.lr[1]: inf is not a finite number"]),
        ("recipe: tiny\nsearch: {optim.lr: {low: 0.01, high: .inf, log: true}}\nn_trials: 2\n", [],
         ["search.optim.lr.high: inf is not a finite number"]),
        ("recipe: tiny\ngrid: {model.depth: [8]}\n", ["train.device=tpu"],
         ["train.device: 'tpu' is not one of auto, cpu, cuda, cuda:N, mps"]),
    ],
    ids=["empty", "no-recipe", "not-utf8", "fixed-nan", "grid-inf", "search-bound-inf", "override-device-tpu"],
)
def test_lab_sweep_refuses_hostile_sweeps_in_one_line(tmp_path, lab_here, sweep, args, fragments):
    root = write_project(tmp_path, GRID, name="study")
    (root / "sweeps" / "study.yaml").write_bytes(sweep if isinstance(sweep, bytes) else sweep.encode())
    one_line_error(lab_here("sweep", "study", "--workers", "1", *args, cwd=root), *fragments)
    assert not (root / "runs").exists()


@pytest.mark.parametrize(
    "sweep,recipe,fragments",
    [
        ("- recipe: tiny\n", RECIPE, ["study.yaml: expected a mapping such as", "got a list"]),
        ("recipe: tiny\ngrid: {model.depth: [8]}\n", "", ["tiny.yaml: empty; expected a mapping such as"]),
        (f"recipe: tiny\ngrid: {{model.depth: [8]}}\nfixed: {{optim.milestones: {bomb(9)}}}\n", RECIPE,
         ["study.yaml: YAML aliases expand to more than 10,000 values"]),
        ("recipe: tiny\ngrid: {model.depth: [8]}\nwhen: [{match: {model.depth: 8}, set: {optim.lr: -.inf}}]\n", RECIPE,
         ["when[0].set.optim.lr: -inf is not a finite number"]),
        ("recipe: tiny\ngrid: {model.depth: [8]}\nfixed: {model.depth: 0x" + "f" * 5000 + "}\n", RECIPE,
         ["fixed.model.depth: an integer of 6021 digits is too large"]),
    ],
    ids=["a-list", "empty-recipe", "alias-bomb", "when-minus-inf", "huge-int"],
)
def test_sweeps_refused_in_one_line(tmp_path, sweep, recipe, fragments):
    """As test_lab_sweep_refuses_hostile_sweeps_in_one_line, in-process: `lab sweep` prints these same lines."""
    from lab.sweep import load_sweep

    root = write_project(tmp_path, GRID, name="study")
    (root / "experiments" / "tiny.yaml").write_text(recipe)
    (root / "sweeps" / "study.yaml").write_text(sweep)
    with pytest.raises(ConfigError) as refused:
        load_sweep(str(root / "sweeps" / "study.yaml"))
    one_line(str(refused.value), *fragments)


def test_exponents_without_a_dot_are_floats_on_the_command_line_and_in_files(lab_here, tmp_path):
    assert parse_override("optim.lr=1e-3") == ("optim.lr", 0.001)
    for text, value in [("5E+4", 50_000.0), ("-2e5", -200_000.0), ("1.5e3", 1500.0), ("+1e0", 1.0), (".5e1", 5.0)]:
        assert parse_override(f"x.y={text}") == ("x.y", value)
    for text in ["1e3abc", "e5", "1e", "1.2.3", "1e-3x"]:
        assert parse_override(f"x.y={text}") == ("x.y", text)  # still text
    assert yaml.safe_load("lr: 1e-3") == {"lr": "1e-3"}  # PyYAML itself is left as it is
    (tmp_path / "r.yaml").write_text(recipe_with("optim", "lr: 1e-2, weight_decay: 5e-4, max_steps: 10, milestones: [8]"))
    config = load_config(tmp_path / "r.yaml", dict([parse_override("optim.gamma=2e-1")]))
    assert (config.optim.lr, config.optim.weight_decay, config.optim.gamma) == (0.01, 0.0005, 0.2)
    # and through the real command: a sweep over a recipe written with exponents, an exponent on its command line
    root = write_project(tmp_path / "project", GRID, name="study")
    (root / "experiments" / "tiny.yaml").write_text(recipe_with("optim", "lr: 1e-2, weight_decay: 5e-4, max_steps: 10, milestones: [8]"))
    result = lab_here("sweep", "study", "--dry-run", "optim.gamma=2e-1", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (root / "runs").exists()


def test_alias_bomb_is_refused_in_well_under_a_second(tmp_path):
    (tmp_path / "bomb.yaml").write_text(f"model: {{depth: {bomb(9)}}}\n")  # 9**9 = 387,420,489 values
    assert (tmp_path / "bomb.yaml").stat().st_size < 600
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb.yaml: YAML aliases expand to more than 10,000 values; write the values out$"):
        read_yaml(tmp_path / "bomb.yaml")
    assert time.perf_counter() - start < 0.5
    (tmp_path / "loop.yaml").write_text("model: &m {depth: [*m]}\n")  # an alias inside its own anchor
    with pytest.raises(ConfigError, match=r"loop.yaml: line 1: a YAML alias refers to the value it is part of"):
        read_yaml(tmp_path / "loop.yaml")
    # aliases used as YAML intends them are fine
    (tmp_path / "ok.yaml").write_text("optim: {milestones: &m [8]}\nmodel: {depth: 8}\n" + "".join(f"k{i}: *m\n" for i in range(500)))
    assert read_yaml(tmp_path / "ok.yaml")["k499"] == [8]


def test_quote_caps_what_an_error_message_repeats():
    from lab.config import quote

    assert quote("vgg") == "'vgg'" and quote([8, 4]) == "[8, 4]" and quote({"a": (1,)}) == "{'a': (1,)}"
    big = [list(range(1_000_000))] * 1000  # a billion values, as aliases make them: quoting must not walk them
    start = time.perf_counter()
    text = quote(big)
    assert len(text) == 80 and text.startswith("[[0, 1, 2") and text.endswith("...")
    assert quote("x" * 10_000_000, limit=20) == "'xxxxxxxxxxxxxxxx..."
    assert quote(16 ** 5000) == "an integer of 6021 digits"  # repr() would raise past 4,300 digits
    loop: list = [1]
    loop.append(loop)
    assert quote(loop) == "[1, [...]]"
    assert time.perf_counter() - start < 0.5


def test_from_dict_names_a_missing_required_field():
    from lab.config import Section, from_dict

    class Spec(Section):
        recipe: str
        metric: str = "val_err"

    with pytest.raises(ConfigError, match=r"^recipe: required, missing$"):
        from_dict(Spec, {"metric": "val_err"})
    with pytest.raises(ConfigError, match=r"^sweep.recipe: required, missing$"):
        from_dict(Spec, {}, prefix="sweep")
    with pytest.raises(ConfigError, match=r"^optim.lr: nan is not a finite number$"):
        make_config(TINY_RECIPE, {"optim.lr": float("nan")})
