"""Sweeps submitted and run on shared clusters and databases (issue 16, rows 5 and 6): nothing in a generated sbatch
script but what SLURM reads, and no password in anything a sweep writes or prints.
"""
from __future__ import annotations

import os
import re
import shlex
import stat
import uuid
from pathlib import Path

import optuna
import pytest

from lab.cli import main
from tests.conftest import POSTGRES, lab, one_error, write_project

# Row 5: nothing in a generated sbatch script but what SLURM reads -----------------------------------------------

FAKE_SBATCH = """#!/bin/bash
# sbatch, as far as the script goes: checked by bash -n, then run with `exec` recorded instead of done
script="${@: -1}"
bash -n "$script" || exit 1
cd "$(dirname "$script")"
( exec() { printf '%s\\n' "$@" > "$FAKE_OUT/argv"; printf '%s' "$LAB_STORAGE" > "$FAKE_OUT/storage"; }
  source "$script" ) > "$FAKE_OUT/ran" 2>&1 || exit 1
grep '^#SBATCH' "$script" > "$FAKE_OUT/directives"
echo 4242
"""


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch):
    bin_dir, out = tmp_path / "bin", tmp_path / "sbatch-out"
    bin_dir.mkdir()
    out.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_OUT", str(out))
    return out


SECRET = "S3cr3tPassw0rd"


def secret_url() -> str:
    """The tests' PostgreSQL with a password in its URL (the server trusts local users: any password works)."""
    from sqlalchemy.engine import make_url

    return make_url(POSTGRES).set(password=SECRET).render_as_string(hide_password=False)


def everything_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def holding(root: Path, secret: str) -> list[str]:
    """The files under ``root`` whose bytes hold ``secret`` (W&B's binary .wandb files included)."""
    return [str(p.relative_to(root)) for p in everything_under(root) if secret.encode() in p.read_bytes()]


@pytest.mark.postgres
@pytest.mark.parametrize("field", ["--partition", "--time", "--sbatch"])
@pytest.mark.parametrize("value", ["gpu\n#SBATCH --uid=0", "$(touch INJECTED)", "gpu`touch INJECTED`"])
def test_sbatch_options_with_newlines_or_commands_are_refused(tmp_path, monkeypatch, capsys, fake_sbatch, field, value,
                                                              study_name):
    root = write_project(tmp_path / "p", {"grid": {"train.seed": [0]}}, name=study_name)
    monkeypatch.chdir(root)
    value = f"--{value}" if field == "--sbatch" and "\n" in value else value
    code = main(["sweep", study_name, "--launcher", "slurm", "--storage", POSTGRES, f"{field}={value}"])
    if field == "--sbatch" and "\n" not in value:  # an extra option is the user's own: it reaches sbatch only
        assert code == 2 and "is not an sbatch option" in capsys.readouterr().err
    else:
        line = one_error(capsys, code)
        assert line.startswith(f"lab sweep: error: {field}: "), line
    assert not (root / "INJECTED").exists() and not (root / "runs").exists()


@pytest.mark.postgres
def test_the_sbatch_script_of_a_hostile_name_and_a_password_runs_as_meant(tmp_path, monkeypatch, capsys, fake_sbatch):
    name = f"x$(touch INJECTED)`touch INJECTED` \"#{uuid.uuid4().hex[:6]}"
    root = write_project(tmp_path / "my project", {"grid": {"train.seed": [0]}}, name=name)
    monkeypatch.chdir(root)
    try:
        assert main(["sweep", name, "--launcher", "slurm", "--storage", secret_url(), "--partition", "gpu,debug",
                     "--time", "1-02:00:00", "--sbatch=--qos=high"]) == 0
        out = capsys.readouterr().out
        argv = (fake_sbatch / "argv").read_text().splitlines()
        assert argv[3:6] == ["sweep", name, "--runs-dir"] and "--storage" not in argv, argv
        assert (fake_sbatch / "storage").read_text() == secret_url()  # the task has the URL, from the 0600 file
        directives = (fake_sbatch / "directives").read_text().splitlines()
        assert re.fullmatch(r"#SBATCH --job-name=lab-x_\S+", directives[0]) and "#SBATCH --partition=gpu,debug" in directives
        assert "#SBATCH --time=1-02:00:00" in directives and "#SBATCH --qos=high" in directives
        assert not list(tmp_path.rglob("INJECTED"))
        slurm = root / "runs" / name / "slurm"
        assert stat.S_IMODE((slurm / "storage.url").stat().st_mode) == 0o600
        assert SECRET not in out and holding(root, SECRET) == [f"runs/{name}/slurm/storage.url"]
        follow = shlex.join(["lab", "sweep", name, "--status", "--storage", secret_url().replace(SECRET, "***")])
        assert f"follow it with: {follow} (" in out  # quoted for the shell, as a whole
        assert "the password is not shown" in out
    finally:
        try:
            optuna.delete_study(study_name=name, storage=POSTGRES)
        except KeyError:
            pass


# Row 6: no password in anything a sweep writes or prints --------------------------------------------------------

@pytest.mark.slow
@pytest.mark.postgres
def test_a_password_in_the_storage_url_is_in_no_file_and_no_output_of_a_sweep(tmp_path, study_name):
    root = write_project(tmp_path, {"grid": {"train.seed": [0, 1]}}, name=study_name)
    result = lab("sweep", study_name, "--storage", secret_url(), "--wandb", "offline", cwd=root)
    assert result.returncode == 0, result.stderr
    assert list((root / "runs" / study_name).glob("*/wandb/offline-run-*/run-*.wandb"))  # W&B's files are there
    status = lab("sweep", study_name, "--status", "--storage", secret_url(), cwd=root)
    assert status.returncode == 0 and "2 done" in status.stdout, status.stderr
    for text in (result.stdout, result.stderr, status.stdout, status.stderr):
        assert SECRET not in text
    assert holding(root, SECRET) == []
    # the line to resume with, after the database went away
    from lab.cli.parser import parse as _parse
    from lab.cli.sweep import _resume_command

    line = _resume_command(_parse(["sweep", study_name, "--storage", secret_url()]))
    assert SECRET not in line and "postgresql://postgres:***@" in line and "LAB_STORAGE" in line
