"""Run folders and studies from someone else (issue 16): nothing in them runs, nothing outside them is written or
deleted, no password is left anywhere, a stopped trial is noticed, and a hostile record file is named, not a crash.

Each test is one row of the issue's table, as an adversarial user would try it; rows 5 and 6 (sbatch scripts,
passwords) are in test_sharing_secrets.py.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from lab.cli import main
from lab.config import make_config
from lab.records import RunRecord, run_dir_for
from tests.conftest import TINY_RECIPE, one_error, train_until_killed, write_project

RUN = "resnet-8-s0"


def tiny(tmp_path: Path, **overrides) -> object:
    return make_config(TINY_RECIPE, {"track.runs_dir": str(tmp_path / "runs"), "track.wandb": "disabled", **overrides})


def write_recipe(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY_RECIPE, "track": {"wandb": "disabled"}}))
    return path


def evil_checkpoint(path: Path, marker: Path) -> None:
    """Rewrite the real checkpoint at ``path`` with a pickled object that would create ``marker`` when unpickled."""

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    state = torch.load(path, weights_only=True)
    state["callbacks"]["Evil"] = Evil()
    torch.save(state, path)


@pytest.fixture
def finished(tmp_path, monkeypatch):
    """A finished tiny run under tmp_path/runs/adhoc, with the project's cwd there."""
    from lab.train import train

    monkeypatch.chdir(tmp_path)
    config = tiny(tmp_path)
    train(config)
    return config


# Row 1: no code from a checkpoint -------------------------------------------------------------------------------

def test_a_pickled_object_in_a_checkpoint_never_runs_when_a_run_resumes(tmp_path, monkeypatch, capsys):
    config = tiny(tmp_path)
    train_until_killed(config, 7, monkeypatch)  # last.ckpt of iteration 5
    record = RunRecord(run_dir_for(config))
    marker = tmp_path / "PWNED"
    evil_checkpoint(record.checkpoint_path, marker)
    capsys.readouterr()
    assert main(["train", str(write_recipe(tmp_path)), f"track.runs_dir={tmp_path / 'runs'}", "-q"]) == 0
    assert not marker.exists()
    err = capsys.readouterr().err
    assert (f"lab: {record.checkpoint_path}: holds a pickled posix.system, which would run code as it is read, not only "
            f"weights; refused unread; set aside as last.ckpt.damaged; {RUN} starts again from iteration 0\n") in err, err
    assert (record.dir / "last.ckpt.damaged").is_file() and record.summary()["steps"] == 10


def test_a_pickled_object_in_a_checkpoint_never_runs_when_a_study_is_analysed(finished, tmp_path, capsys):
    record = RunRecord(run_dir_for(finished))
    marker = tmp_path / "PWNED"
    evil_checkpoint(record.checkpoint_path, marker)
    assert main(["analyze", "adhoc"]) == 0
    assert not marker.exists()
    out = capsys.readouterr().out
    assert f"layer responses: left out 1 of 1 runs ({RUN}: runs/adhoc/{RUN}/last.ckpt: holds a pickled posix.system" in out


# Rows 2 and 3: writes stay inside the run folder ----------------------------------------------------------------

def test_a_run_folder_that_is_a_symbolic_link_is_refused_and_its_target_untouched(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "thesis.tex").write_text("years of work")
    (tmp_path / "runs" / "adhoc").mkdir(parents=True)
    (tmp_path / "runs" / "adhoc" / RUN).symlink_to(elsewhere)
    recipe = str(write_recipe(tmp_path))
    line = one_error(capsys, main(["train", recipe, "-q"]))
    assert line.startswith(f"lab train: error: runs/adhoc/{RUN}: the run folder is a symbolic link (to {elsewhere});")
    assert "track.follow_symlinks=true" in line
    assert [p.name for p in elsewhere.iterdir()] == ["thesis.tex"]
    # a study folder that is a link, the same
    shutil.rmtree(tmp_path / "runs")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "adhoc").symlink_to(elsewhere)
    assert "the study folder is a symbolic link" in one_error(capsys, main(["train", recipe, "-q"]))
    # opted in: written through the link (the user's own choice), and the target's other files kept
    assert main(["train", recipe, "track.follow_symlinks=true", "-q"]) == 0
    assert (elsewhere / RUN / "summary.json").is_file() and (elsewhere / "thesis.tex").read_text() == "years of work"


def test_planted_tmp_files_and_record_links_never_redirect_a_write(tmp_path, monkeypatch, capsys):
    config = tiny(tmp_path)
    train_until_killed(config, 7, monkeypatch)
    record = RunRecord(run_dir_for(config))
    victims = {name: tmp_path / f"victim-{name}" for name in ("summary.json.tmp", "metrics.jsonl.tmp", "last.ckpt.tmp",
                                                             "wandb")}
    for name, victim in victims.items():
        victim.write_text("not yours")
        (record.dir / name).symlink_to(victim)
    capsys.readouterr()
    assert main(["train", str(write_recipe(tmp_path)), f"track.runs_dir={tmp_path / 'runs'}", "-q"]) == 0
    assert all(v.read_text() == "not yours" for v in victims.values())
    for name in ("summary.json", "metrics.jsonl", "last.ckpt", "config.yaml"):
        assert not (record.dir / name).is_symlink() and (record.dir / name).is_file(), name
    assert f"{record.dir / 'wandb'}: a symbolic link (to {victims['wandb']}), which lab never writes; set aside as " \
           f"wandb.damaged" in capsys.readouterr().err
    assert record.summary()["steps"] == 10 and [r["iteration"] for r in record.metrics.history()[0]] == [5, 10]


def test_a_planted_trial_log_link_is_set_aside_and_its_target_untouched(lab_here, tmp_path):
    root = write_project(tmp_path, {"grid": {"train.seed": [0]}})
    victim = tmp_path / "victim.txt"
    victim.write_text("not yours")
    (root / "runs" / "tiny" / "logs").mkdir(parents=True)
    (root / "runs" / "tiny" / "logs" / f"{RUN}.log").symlink_to(victim)
    result = lab_here("sweep", "tiny", "-q", "--wandb", "disabled", cwd=root)
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "not yours" and (root / "runs" / "tiny" / "logs" / f"{RUN}.log.damaged").is_symlink()
    assert f"logs/{RUN}.log: a symbolic link (to {victim}), which lab never writes; set aside as {RUN}.log.damaged" \
        in result.stderr


# Row 4 and 10: names are one printable folder name; printed hints are shell-quoted ------------------------------

def test_names_that_leave_the_runs_folder_or_break_a_line_are_refused(tmp_path, monkeypatch, capsys):
    root = write_project(tmp_path, {"grid": {"train.seed": [0]}})
    monkeypatch.chdir(root)
    recipe = str(root / "experiments" / "tiny.yaml")
    for study in ("..", ".", ""):
        line = one_error(capsys, main(["train", recipe, f"track.study={study}"]))
        assert "track.study: " in line, line
    assert "--name: 'a\\nb' is not a folder name (it holds '\\n';" in one_error(capsys, main(["train", recipe, "--name", "a\nb"]))
    for name in ("..", "a\nb", "a\x1b[2Jb"):
        (root / "sweeps" / f"{name}.yaml").write_text("recipe: tiny\ngrid: {train.seed: [0]}\n")
        line = one_error(capsys, main(["sweep", str(root / "sweeps" / f"{name}.yaml")]))
        assert "the sweep's name (its file name, the study's folder): " in line, line
    assert sorted(p.name for p in root.iterdir()) == ["experiments", "sweeps"]  # nothing written anywhere


def test_a_sweep_named_with_shell_characters_prints_hints_that_paste_safely(lab_here, tmp_path):
    name = "a;touch X"
    root = write_project(tmp_path, {"grid": {"train.seed": [0]}}, name=name)
    result = lab_here("sweep", name, "-q", "--wandb", "disabled", cwd=root)
    assert result.returncode == 0, result.stderr
    hint = re.search(r"next: (.*)$", result.stdout, re.M).group(1)
    assert hint == "lab analyze 'a;touch X'"
    pasted = subprocess.run(["bash", "-c", hint.replace("lab ", f"{sys.executable} -m lab ", 1)], cwd=root,
                            capture_output=True, text=True)
    assert pasted.returncode == 0, pasted.stderr
    assert not (root / "X").exists()



# Row 7: a stopped trial is noticed ------------------------------------------------------------------------------

def test_a_stall_watch_measures_pauses_and_sets_its_limit_from_them():
    from lab.sweep import STALL_FLOOR_S, STARTUP_STALL_S, StallWatch

    pulse = [0.0, 0.0]
    watch = StallWatch(pulse, None, started=1000.0)
    assert watch.idle(1100.0) == 100.0 and watch.limit() == STARTUP_STALL_S  # no iteration yet
    pulse[:] = [1, 1200.0]
    assert watch.idle(1201.0) == 1.0 and watch.limit() == STALL_FLOOR_S
    pulse[:] = [2, 1260.0]  # a pause of 60 s (an evaluation, a slow disk): 10x that
    assert watch.idle(1260.0) == 0.0 and watch.limit() == 600.0
    assert "stalled_since" not in watch.report(1500.0) and watch.report(1560.0)["stalled_since"] == 1260.0
    given = StallWatch([3, 50.0], 20.0, started=0.0)
    assert given.idle(60.0) == 10.0 and given.limit() == 20.0 and given.report(61.0)["stall_after"] == 20


def trial_pid(log: Path) -> int | None:
    """The process that writes ``log`` (its stdout): the trial process."""
    for fd in Path("/proc").glob("[0-9]*/fd/1"):
        try:
            if os.readlink(fd) == str(log):
                return int(fd.parts[2])
        except OSError:
            continue
    return None


@pytest.mark.slow
def test_a_stopped_trial_is_shown_stalled_killed_and_its_run_resumed(lab_here, tmp_path):
    long = {**TINY_RECIPE, "optim": {**TINY_RECIPE["optim"], "max_steps": 300, "milestones": [250]},
            "track": {"wandb": "disabled"}}
    root = write_project(tmp_path, {"grid": {"train.seed": [0]}}, long)
    sweep = subprocess.Popen([sys.executable, "-m", "lab", "sweep", "tiny", "--stall-timeout", "12", "-q"], cwd=root,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = root / "runs" / "tiny" / RUN / "metrics.jsonl"
    deadline = time.time() + 180
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
        assert time.time() < deadline and sweep.poll() is None, "no evaluation within 180 s"
        time.sleep(0.2)
    pid = trial_pid(root / "runs" / "tiny" / "logs" / f"{RUN}.log")
    os.kill(pid, signal.SIGSTOP)
    stopped_at = len(metrics.read_text().splitlines())
    try:
        seen = ""
        while "stalled" not in seen:
            assert time.time() < deadline + 90, seen  # shown stalled from 6 s to 12 s without progress
            seen = lab_here("sweep", "tiny", "--status", cwd=root).stdout
        assert re.search(rf"stalled  {RUN}: trial 0 on .*, no progress for \d+s \(killed and resumed after 12s\)", seen), seen
        out, err = sweep.communicate(timeout=300)
    finally:
        if sweep.poll() is None:
            sweep.kill()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert sweep.returncode == 0, err
    study = optuna.load_study(study_name="tiny", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(root / "runs" / "tiny" / "optuna.journal"))))
    first, second = study.trials
    assert first.state.name == "FAIL" and first.user_attrs["failure"].startswith("stalled: no progress for ")
    assert second.state.name == "COMPLETE" and second.user_attrs["continues"] == 0 and second.user_attrs["stalled"] == 1
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["iteration"] for r in rows] == list(range(5, 301, 5)) and stopped_at >= 2  # resumed, not restarted
    log = (root / "runs" / "tiny" / "logs" / f"{RUN}.log").read_text()
    assert "no progress for 1" in log and "was killed; its run resumes from its checkpoint" in log


# Rows 8 and 9: hostile record files are named, folders that are files refused -----------------------------------

@pytest.mark.parametrize("content", ["[" * 5000 + "]" * 5000,
                                     "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
                                         f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                                         for p, c in zip("abcdefgh", "bcdefghi"))])
def test_a_hostile_config_yaml_in_a_run_is_named_and_the_analysis_goes_on(finished, tmp_path, capsys, content):
    record = RunRecord(run_dir_for(finished))
    record.config_path.write_text(content)
    assert main(["analyze", "adhoc"]) == 0
    out = capsys.readouterr().out
    assert f"layer responses: left out 1 of 1 runs ({RUN}: runs/adhoc/{RUN}/config.yaml: " in out, out
    assert (tmp_path / "runs" / "adhoc" / "analysis" / "degradation-1col.png").is_file()


def test_a_hostile_summary_or_metrics_file_is_named_not_a_traceback(finished, tmp_path, capsys):
    record = RunRecord(run_dir_for(finished))
    good = record.summary_path.read_text()
    record.summary_path.write_text("[" * 5000 + "]" * 5000)
    assert main(["analyze", "adhoc"]) == 1
    err = capsys.readouterr().err
    assert f"lab analyze: {RUN}: runs/adhoc/{RUN}/summary.json is not readable (nested too deeply" in err, err
    record.summary_path.write_text(good)
    with open(record.metrics_path, "a") as f:
        f.write("[" * 5000 + "\n")
    assert main(["analyze", "adhoc", "--partial"]) == 0
    err = capsys.readouterr().err
    assert f"runs/adhoc/{RUN}/metrics.jsonl line 3 is not readable (nested too deeply" in err, err


def test_a_runs_folder_or_a_storage_that_is_a_file_is_one_line(tmp_path, monkeypatch, capsys):
    root = write_project(tmp_path, {"grid": {"train.seed": [0]}})
    monkeypatch.chdir(root)
    (root / "afile").write_text("a file")
    recipe = str(root / "experiments" / "tiny.yaml")
    assert "afile: a file, where the study folder afile/adhoc would go" in one_error(
        capsys, main(["train", recipe, "track.runs_dir=afile"]))
    assert "afile: a file, where the study folder afile/tiny would go" in one_error(
        capsys, main(["sweep", "tiny", "--runs-dir", "afile"]))
    assert "afile: the journal's folder is a file, not a folder; give --storage another journal file" in one_error(
        capsys, main(["sweep", "tiny", "--storage", "afile/optuna.journal"]))
    assert "is a folder; give a journal file" in one_error(capsys, main(["sweep", "tiny", "--storage", "experiments"]))
    assert (root / "afile").read_text() == "a file"
