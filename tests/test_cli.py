"""The ``lab`` command without surprises: its own lines only (``-v`` shows what the libraries say), a quick
``lab --version``, and options, overrides and ``-v`` in any order."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, TINY_RECIPE, write_project

RESULT = r"resnet-8-s{seed}: train_err [0-9.]+%, val_err [0-9.]+%, test_err [0-9.]+% after 10 iterations \(\d+s\); " \
         r"record: runs/adhoc/resnet-8-s{seed}\n"
SRUN_HINT = "The `srun` command is available on your system but is not used"  # Lightning's, where srun is found


def lab(*args: str, cwd: Path, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``lab ARGS`` on a machine with SLURM's ``srun`` (a fake one on PATH), outside any SLURM job."""
    bin_dir = cwd / "bin"
    if not (bin_dir / "srun").exists():
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / "srun").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "LAB_VERBOSE"}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", WANDB_MODE="offline", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, *python_flags, "-m", "lab", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_version_names_the_commit_and_imports_no_torch(tmp_path):
    result = lab("--version", cwd=tmp_path, python_flags=("-X", "importtime"))
    assert result.returncode == 0, result.stderr
    version = re.fullmatch(r"lab (\d+\.\d+\.\d+)(?: \(git ([0-9a-f]{12})(\+dirty)?\))?\n", result.stdout)
    assert version, result.stdout
    from lab import __version__

    assert version[1] == __version__
    head = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode == 0 and Path(head.stdout.split()[0]).resolve() == ROOT:  # a git checkout: its commit
        assert version[2] == head.stdout.split()[1][:12]
    # -X importtime: a line on stderr for every module imported, its name after the last |
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "lab.cli" in imported
    assert not {name for name in imported if name.split(".")[0] in ("torch", "numpy", "pytorch_lightning", "wandb")}
    assert lab("-v", "--version", cwd=tmp_path).stdout == result.stdout


def test_train_and_analyze_print_their_own_lines_only(tmp_path):
    """No Lightning SLURM hint, W&B or other library lines: `lab train` prints its result line and nothing else."""
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    result = lab("train", "tiny.yaml", "train.seed=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(RESULT.format(seed=2), result.stdout), result.stdout
    # not a terminal: one progress line per evaluation (lab.progress), and nothing else
    evaluation = r"resnet-8-s2: iteration (5|10)/10, (val_err|train_err) [0-9.]+%, (val_err|train_err) [0-9.]+%, \d+ images/s, ETA \d+:\d\d"
    assert [bool(re.fullmatch(evaluation, line)) for line in result.stderr.splitlines()] == [True, True], result.stderr
    analyzed = lab("analyze", "adhoc", cwd=tmp_path)  # `lab train` records in runs/adhoc: a study of one run
    assert analyzed.returncode == 0, analyzed.stderr
    assert analyzed.stderr == ""
    assert all(Path(tmp_path, line).is_file() for line in analyzed.stdout.splitlines()), analyzed.stdout


def test_verbose_shows_what_the_libraries_say(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    result = lab("train", "tiny.yaml", "-v", "train.seed=3", cwd=tmp_path)  # -v after the command, an override after it
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(RESULT.format(seed=3), result.stdout), result.stdout
    assert SRUN_HINT in result.stderr  # a Lightning warning
    assert "GPU available: " in result.stderr  # a Lightning info line


@pytest.mark.parametrize("where", ["before", "after"])
def test_sweep_dry_run_takes_options_overrides_and_verbose_in_any_order(tmp_path, where):
    root = write_project(tmp_path, {"grid": {"model.arch": ["plain", "resnet"]}})
    words = ["sweep", "tiny", "--workers", "2", "model.depth=14", "--dry-run", "optim.max_steps=20"]
    result = lab(*(["--verbose", *words] if where == "before" else [*words, "-v"]), cwd=root)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("  ") and "-s0" in line]
    assert [(row[0], row[-2]) for row in rows] == [("plain-14-s0", "20"), ("resnet-14-s0", "20")], result.stdout
    assert not (root / "runs").exists()
