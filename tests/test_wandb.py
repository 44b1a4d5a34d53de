"""The W&B run of a training run, read back with W&B's own reader of its transaction log (``wandb leet inspect``).

W&B's history must be ``metrics.jsonl``: every evaluation once, in order, with ``iteration`` as the x-axis, also
after a run is killed and resumed (two W&B fragments with one run id, as ``wandb sync`` would upload them).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lab.config import make_config
from lab.train.tracking import wandb_key
from lab.train import train
from tests.conftest import TINY_RECIPE, lab

# Long enough to kill after its first checkpoint: 60 iterations of ResNet-8 on digits, evaluated every 5.
LONG_RECIPE = {**TINY_RECIPE, "optim": {**TINY_RECIPE["optim"], "max_steps": 60, "milestones": [50]}}
METRICS = ("train_err", "val_err", "test_err", "train_loss", "val_loss", "test_loss")  # train/err, ... in W&B
OWN = ("params", "wall_s", "steps")  # the run's own numbers in W&B's summary


def inspect(path: Path, *flags: str) -> subprocess.CompletedProcess:
    """``wandb leet inspect --json [FLAGS] PATH``: W&B's reader of a ``.wandb`` file (a torn tail is read up to it)."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_ERROR_REPORTING": "false"}
    result = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", *flags, str(path)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in inspect(path).stdout.splitlines() if line.strip()]


def fragments(run_dir: Path) -> list[Path]:
    """The run's ``.wandb`` files, oldest first (one per attempt: a resumed run adds one with the same run id)."""
    files = list((run_dir / "wandb").glob("*run-*/run-*.wandb"))
    return sorted(files, key=lambda f: f.parent.name.split("run-", 1)[1])


def history(log: list[dict]) -> list[dict]:
    return [r["history"]["item"] for r in log if r["type"] == "history"]


def metrics_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def check_history(items: list[dict], rows: list[dict]) -> None:
    """W&B's history rows are exactly the rows of metrics.jsonl, in order, each at step = its iteration."""
    assert [r["iteration"] for r in rows] == sorted({r["iteration"] for r in rows})
    logged = [{k: v for k, v in item.items() if not k.startswith("_")} for item in items]
    assert [r["iteration"] for r in logged] == [r["iteration"] for r in rows], "every evaluation once, in order"
    assert logged == [{wandb_key(k): v for k, v in row.items()} for row in rows]
    assert {"train/err", "train/loss", "val/err", "val/loss", "test/err", "test/loss", "lr", "iteration"} <= set(logged[0])
    assert not {k for item in logged for k in item if "_" in k and "/" not in k}, "no flat train_err, val_loss, ..."
    assert [item["_step"] for item in items] == [r["iteration"] for r in rows], "W&B's _step is the iteration"
    assert not {"epoch", "trainer/global_step"} & {k for item in items for k in item}


def check_metric_definitions(log: list[dict]) -> None:
    metrics = [r["metric"] for r in log if r["type"] == "metric"]
    assert {"name": "iteration", "options": {"defined": True}} in metrics
    named = {m["name"]: m for m in metrics if "name" in m}
    for key in ("train/err", "train/loss", "val/err", "val/loss", "test/err", "test/loss", "lr"):
        assert named[key]["step_metric"] == "iteration", key  # each section plotted against the iteration
    assert named["val/err"]["summary"] == {"min": True, "last": True}
    globs = {m["glob_name"]: m for m in metrics if "glob_name" in m}
    assert set(globs) == {"train/*", "val/*", "test/*"} and all(m["step_metric"] == "iteration" for m in globs.values())
    assert not any("trainer/global_step" in (m.get("name"), m.get("step_metric")) for m in metrics)


def check_summary_and_config(path: Path, summary: dict) -> None:
    """W&B's run summary holds the final metrics, parameter count and wall time; its config groups by arch/depth/..."""
    state = json.loads(inspect(path, "--summary").stdout)
    assert state["state"] == "finished" and state["exit_code"] == 0
    assert {k: state["summary"][wandb_key(k)]["last"] for k in METRICS} == {k: summary[k] for k in METRICS}
    assert state["summary"]["val/err"]["min"] == summary["best_val_err"]
    assert {k: state["summary"][k] for k in OWN} == {k: summary[k] for k in OWN}
    assert state["summary"]["iteration"] == summary["steps"]
    config = state["config"]
    # the fields that apply to a digits run: no ImageFolder decoding, no data folder, no plateau settings
    assert not {"crop", "scale", "eval_resize", "mean_images", "workers", "data_dir", "download"} & set(config["data"])
    assert not {"plateau_patience", "plateau_threshold", "min_lr"} & set(config["optim"])
    assert config["data"]["name"] == "digits" and config["optim"]["milestones"] == summary["config"]["optim"]["milestones"]
    assert {k: config.get(k) for k in ("arch", "depth", "shortcut", "seed")} == \
        {k: summary[k] for k in ("arch", "depth", "shortcut", "seed")}
    assert config["model"] == summary["config"]["model"]  # the config too


def test_wandb_history_is_metrics_jsonl_with_iteration_as_its_x_axis(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(
        {**TINY_RECIPE, "optim": {**TINY_RECIPE["optim"], "max_steps": 15, "milestones": [12]}}))
    result = lab("train", "tiny.yaml", "track.runs_dir=runs", "track.study=demo", "train.seed=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "anonymous" not in result.stderr, "W&B's warning about the anonymous setting is gone"
    assert not [line for line in result.stderr.splitlines() if line.startswith("wandb:")], "W&B says nothing"
    run_dir = tmp_path / "runs" / "demo" / "resnet-8-s2"
    (path,) = fragments(run_dir)
    rows = metrics_rows(run_dir)
    assert [r["iteration"] for r in rows] == [5, 10, 15] and not any("epoch" in r for r in rows)
    log = records(path)
    check_history(history(log), rows)
    check_metric_definitions(log)
    check_summary_and_config(path, json.loads((run_dir / "summary.json").read_text()))


@pytest.mark.parametrize("flush_s", ["0", "0.05"], ids=["first-attempt-lost-in-wandb", "first-attempt-kept-in-wandb"])
def test_a_killed_and_resumed_run_has_every_evaluation_once_in_wandb(tmp_path, monkeypatch, flush_s):
    """Killed (SIGKILL) after its first checkpoint, then run again to the end.

    W&B writes its ``.wandb`` file every ``flush_s`` seconds (15 by default), from its own process: with 0 (only when
    a buffer fills or the run ends) the killed attempt's rows never reach the file, as a user found (evaluations in
    metrics.jsonl but not in W&B), so the second attempt must log them; with a short interval they do, and must not
    be logged again. The first attempt is stopped (SIGSTOP) before it is killed, so that it cannot finish first on a
    slow machine, and W&B's process can write what it was sent. The second attempt runs in this process (``train``,
    as ``lab train`` calls it), which saves a start of Python, torch and W&B.
    """
    (tmp_path / "long.yaml").write_text(yaml.safe_dump(LONG_RECIPE))
    run_dir = tmp_path / "runs" / "demo" / "resnet-8-s0"
    args = [sys.executable, "-m", "lab", "train", "long.yaml", "track.runs_dir=runs", "track.study=demo"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB__TRANSACTION_LOG_FLUSH_INTERVAL": flush_s}
    env.pop("WANDB_SERVICE", None)  # W&B's own process, not this one's (W&B here hands it to child processes)
    first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # Two evaluations: the first one's checkpoint is saved and its row sent to W&B.
        while first.poll() is None and time.monotonic() < deadline and not (
                (run_dir / "last.ckpt").exists() and len(metrics_rows(run_dir)) >= 2):
            time.sleep(0.02)
        assert first.poll() is None, f"the first attempt ended before it was killed: {first.communicate()[1]}"
        first.send_signal(signal.SIGSTOP)
        if flush_s != "0":
            while not any(history(records(p)) for p in fragments(run_dir)) and time.monotonic() < deadline:
                time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.communicate()
    assert not (run_dir / "summary.json").exists()

    monkeypatch.chdir(tmp_path)  # the same config as the command's (a relative runs_dir), so that the run resumes
    monkeypatch.setenv("WANDB_MODE", "offline")
    summary = train(make_config(LONG_RECIPE, {"track.runs_dir": "runs", "track.study": "demo"}))
    assert summary == json.loads((run_dir / "summary.json").read_text())
    rows = metrics_rows(run_dir)
    assert [r["iteration"] for r in rows] == list(range(5, 61, 5))
    paths = fragments(run_dir)
    assert len(paths) == 2, "one W&B fragment per attempt, with one run id"
    assert len({p.name for p in paths}) == 1
    logs = [records(p) for p in paths]
    parts = [history(log) for log in logs]
    if flush_s == "0":
        assert parts[0] == [], "W&B kept nothing of the killed attempt (the case this test is about)"
    else:
        assert parts[0], "W&B kept some of the killed attempt (the case this test is about)"
    check_history(parts[0] + parts[1], rows)  # both fragments, in order, as `wandb sync` uploads them
    check_metric_definitions(logs[1])
    check_summary_and_config(paths[1], json.loads((run_dir / "summary.json").read_text()))


def test_wandb_gets_a_row_only_once_its_checkpoint_is_saved(tmp_path, monkeypatch):
    """A row of metrics.jsonl past the last checkpoint is trained again on resume (and dropped from the record), so
    W&B must not have it from the attempt that stopped: here the checkpoint of iteration 10 cannot be written."""
    from lab.train.callbacks import RecordCheckpoint

    cfg = make_config(LONG_RECIPE, {"track.runs_dir": str(tmp_path), "optim.max_steps": 20, "optim.milestones": [15]})
    run_dir = tmp_path / "adhoc" / "resnet-8-s0"
    save = RecordCheckpoint.save

    def full_disk_at_10(self, trainer):
        if trainer.global_step == 10:
            raise OSError(28, "No space left on device")
        save(self, trainer)

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(RecordCheckpoint, "save", full_disk_at_10)
    with pytest.raises(OSError, match="No space left"):
        train(cfg)
    assert [r["iteration"] for r in metrics_rows(run_dir)] == [5, 10]
    (stopped,) = fragments(run_dir)
    assert [item["iteration"] for item in history(records(stopped))] == [5], "W&B holds checkpointed rows only"

    monkeypatch.setattr(RecordCheckpoint, "save", save)
    train(cfg)  # resumes from iteration 5
    rows = metrics_rows(run_dir)
    assert [r["iteration"] for r in rows] == [5, 10, 15, 20]
    paths = fragments(run_dir)
    assert len(paths) == 2
    check_history([item for p in paths for item in history(records(p))], rows)


def run_record(path: Path) -> dict:
    (run,) = [r["run"] for r in records(path) if r["type"] == "run"]
    return run


@pytest.mark.slow
def test_two_studies_of_one_name_are_two_wandb_groups_and_wandb_agrees_with_the_analysis(lab_here, tmp_path):
    """Every trial of a study in the study's group (its name and an id stored with its Optuna study); the same
    study name in another runs folder is another study, and another group. The analysis's summary.csv and W&B's
    run summaries hold the same final numbers."""
    import csv

    import optuna

    from tests.conftest import write_project

    root = write_project(tmp_path, {"grid": {"train.seed": [0, 1]}})
    for runs in ("runs-a", "runs-b"):
        result = lab_here("sweep", "tiny", "--workers", "1", "--runs-dir", runs, cwd=root)
        assert result.returncode == 0, result.stdout + result.stderr
    groups = {}
    for runs in ("runs-a", "runs-b"):
        study = optuna.load_study(study_name="tiny", storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(root / runs / "tiny" / "optuna.journal"))))
        group = study.user_attrs["wandb_group"]
        assert group.startswith("tiny-") and len(group) == len("tiny-") + 6
        for seed in (0, 1):
            (path,) = fragments(root / runs / "tiny" / f"resnet-8-s{seed}")
            assert run_record(path)["run_group"] == group
        groups[runs] = group
    assert groups["runs-a"] != groups["runs-b"]

    analyzed = lab_here("analyze", "tiny", "--runs-dir", "runs-a", cwd=root)
    assert analyzed.returncode == 0, analyzed.stderr
    with open(root / "runs-a" / "tiny" / "analysis" / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2
    for row in table:
        (path,) = fragments(root / "runs-a" / "tiny" / row["run"])
        summary = json.loads(inspect(path, "--summary").stdout)["summary"]
        for metric in ("train_err", "val_err", "test_err"):
            assert summary[wandb_key(metric)]["last"] == pytest.approx(float(row[metric]), rel=1e-12), (row["run"], metric)
        assert summary["params"] == int(row["params"]) and summary["steps"] == int(row["steps"])


def test_lab_train_runs_of_one_study_folder_share_its_group(tmp_path):
    from lab.train.tracking import WANDB_GROUP_FILE

    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    for seed in (0, 1):
        assert lab("train", "tiny.yaml", f"train.seed={seed}", cwd=tmp_path).returncode == 0
    group = (tmp_path / "runs" / "adhoc" / WANDB_GROUP_FILE).read_text().strip()
    assert group.startswith("adhoc-")
    assert {run_record(fragments(tmp_path / "runs" / "adhoc" / f"resnet-8-s{s}")[0])["run_group"] for s in (0, 1)} == {group}
