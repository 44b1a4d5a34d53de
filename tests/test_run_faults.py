"""Run-level faults: a diverged run, and damaged record files (torn checkpoint, torn metrics, garbage summary, full disk).

Every damaged file is damaged for real (truncated, overwritten); a rerun must then finish with a result identical to
a clean run's, bit for bit (training resumes exactly: ``test_train.test_a_killed_run_resumes_from_its_checkpoint_exactly``).
"""
import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from lab.config import make_config
from lab.train.classifier import Classifier
from lab.records import FAILURE_FILE, RunFailed, finished_summary, read_failure, run_dir_for, write_json_atomic
from lab.train.tracking import RecordLogger
from lab.records import FINAL_METRICS
from lab.train import train
from lab.train.callbacks import RecordCheckpoint
from tests.conftest import TINY_RECIPE, lab, train_until_killed

RECIPE = {**TINY_RECIPE, "data": {"name": "digits", "crop_pad": 1, "flip": True},
          "optim": {**TINY_RECIPE["optim"], "max_steps": 30, "milestones": [25]}}
RESULT_KEYS = (*FINAL_METRICS, "best_val_err", "steps", "params", "warmup_ended")


def config(runs_dir: Path, **overrides):
    return make_config(RECIPE, {"track.runs_dir": str(runs_dir), "track.wandb": "disabled", **overrides})


def rows(cfg) -> list[dict]:
    return [json.loads(line) for line in (run_dir_for(cfg) / "metrics.jsonl").read_text().splitlines()]


def result(summary: dict) -> dict:
    return {k: summary[k] for k in RESULT_KEYS}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A clean run of RECIPE: (its summary, its metrics rows)."""
    cfg = config(tmp_path_factory.mktemp("clean"))
    return train(cfg), rows(cfg)


def killed_at(monkeypatch, cfg, step: int) -> None:
    """Train ``cfg`` until a crash at iteration ``step`` (the checkpoint is the last evaluation's before it)."""
    train_until_killed(cfg, step, monkeypatch)


def notes(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("lab: ")]


# 1. A diverged run -------------------------------------------------------------------------------------------------

def test_a_diverged_run_fails_with_the_first_bad_iteration_and_leaves_no_result(tmp_path, monkeypatch):
    # The loss is non-finite from iteration 13 on; the host looks every 10 iterations (the one evaluation: at 30):
    # it sees it at 20, and names 13.
    cfg = config(tmp_path, **{"train.eval_every": 30})
    train_step = Classifier.training_step

    def blows_up_at_13(self, batch, batch_idx):  # a NaN in the input at 13: NaN loss, NaN weights from then on
        x, y = batch
        return train_step(self, (x * float("nan") if self.global_step == 13 else x, y), batch_idx)

    monkeypatch.setattr(Classifier, "training_step", blows_up_at_13)
    with pytest.raises(RunFailed, match=r"^resnet-8-s0 diverged at iteration 13$") as failed:
        train(cfg)
    run_dir = run_dir_for(cfg)
    assert failed.value.run_dir == run_dir and failed.value.reason == "diverged at iteration 13"
    assert not (run_dir / "summary.json").exists() and finished_summary(run_dir, cfg) is None
    failure = json.loads((run_dir / FAILURE_FILE).read_text())
    assert failure["run"] == "resnet-8-s0" and failure["iteration"] == 13 and failure["config"] == cfg.to_dict()
    assert failure["reason"] == read_failure(run_dir) == "diverged at iteration 13" and failure["finished"]
    assert read_failure(tmp_path) is None  # no failure there

    # A later train() of the run starts afresh (no resume into the divergence) and forgets the failure.
    monkeypatch.setattr(Classifier, "training_step", train_step)
    summary = train(cfg)
    assert summary["steps"] == 30 and not (run_dir / FAILURE_FILE).exists() and read_failure(run_dir) is None


def test_lab_train_of_a_diverging_lr_says_where_it_diverged_in_one_line(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    result = lab("train", "tiny.yaml", "optim.lr=1.0e+30", "track.runs_dir=runs", "track.study=demo", cwd=tmp_path)
    assert result.returncode == 1
    # SGD at lr 1e30 makes the loss NaN at the second iteration already (0: the first).
    said = [line for line in result.stderr.splitlines() if not line.startswith("wandb:")]  # W&B offline has its say
    assert said == ["lab train: resnet-8-s0 diverged at iteration 1; record: runs/demo/resnet-8-s0"]
    assert "Traceback" not in result.stderr and "train_err" not in result.stdout
    run_dir = tmp_path / "runs" / "demo" / "resnet-8-s0"
    assert not (run_dir / "summary.json").exists() and read_failure(run_dir) == "diverged at iteration 1"


# 2. A torn checkpoint ----------------------------------------------------------------------------------------------

def test_a_torn_checkpoint_is_set_aside_and_the_run_starts_again(tmp_path, monkeypatch, capsys, clean):
    cfg = config(tmp_path)
    killed_at(monkeypatch, cfg, 17)  # last.ckpt of iteration 15
    ckpt = run_dir_for(cfg) / "last.ckpt"
    subprocess.run(["truncate", "-s", str(ckpt.stat().st_size // 2), str(ckpt)], check=True)  # a crash mid-write
    torn = ckpt.read_bytes()
    capsys.readouterr()

    summary = train(cfg)
    said = notes(capsys)
    assert len(said) == 1 and said[0].startswith(f"lab: {ckpt}: unreadable (")  # (what torch found wrong)
    assert said[0].endswith("; set aside as last.ckpt.damaged; resnet-8-s0 starts again from iteration 0")
    assert (ckpt.parent / "last.ckpt.damaged").read_bytes() == torn  # kept for inspection
    assert rows(cfg) == clean[1]  # from zero, and nothing of the first attempt mixed in
    assert result(summary) == result(clean[0])
    assert train(cfg) == summary  # and finished: the damaged file left aside is never read again


# 3. A torn metrics.jsonl -------------------------------------------------------------------------------------------

def test_a_torn_last_metrics_line_past_the_checkpoint_is_dropped(tmp_path, monkeypatch, capsys, clean):
    # A crash between logging the row of iteration 15 and saving its checkpoint: rows 5, 10, 15; last.ckpt of 10.
    cfg = config(tmp_path)
    save = RecordCheckpoint.save

    def dies_saving_15(self, trainer):
        if trainer.global_step == 15:
            raise RuntimeError("worker killed")
        save(self, trainer)

    monkeypatch.setattr(RecordCheckpoint, "save", dies_saving_15)
    with pytest.raises(RuntimeError, match="worker killed"):
        train(cfg)
    monkeypatch.setattr(RecordCheckpoint, "save", save)
    metrics = run_dir_for(cfg) / "metrics.jsonl"
    subprocess.run(["truncate", "-s", "-5", str(metrics)], check=True)
    capsys.readouterr()

    summary = train(cfg)
    assert notes(capsys) == [f"lab: {metrics}: line 3 is unreadable (torn by a crash?); it comes after the checkpoint "
                             f"of iteration 10, so it is dropped and resnet-8-s0 resumes"]
    assert rows(cfg) == clean[1] and result(summary) == result(clean[0])


def test_a_torn_metrics_line_the_resume_needs_is_set_aside_and_the_run_starts_again(tmp_path, monkeypatch, capsys, clean):
    # Killed at 17: rows 5, 10, 15 and last.ckpt of 15; the row of 15 is torn afterwards: it cannot be logged again.
    cfg = config(tmp_path)
    killed_at(monkeypatch, cfg, 17)
    metrics = run_dir_for(cfg) / "metrics.jsonl"
    subprocess.run(["truncate", "-s", "-5", str(metrics)], check=True)
    capsys.readouterr()

    summary = train(cfg)
    assert notes(capsys) == [f"lab: {metrics}: line 3 is unreadable; set aside as metrics.jsonl.damaged; "
                             f"resnet-8-s0 starts again from iteration 0"]
    assert (metrics.parent / "metrics.jsonl.damaged").is_file()
    assert rows(cfg) == clean[1] and result(summary) == result(clean[0])


# 4. A garbage summary ----------------------------------------------------------------------------------------------

def test_a_garbage_summary_is_not_a_result_and_the_run_finishes_again(tmp_path, capsys, clean):
    cfg = config(tmp_path)
    train(cfg)
    path = run_dir_for(cfg) / "summary.json"
    subprocess.run(f"echo garbage > {shlex.quote(str(path))}", shell=True, check=True)
    assert finished_summary(path.parent, cfg) is None  # the sweep coordinator asks: not finished, and no exception
    capsys.readouterr()

    summary = train(cfg)
    assert notes(capsys) == [f"lab: {path}: damaged (not a run summary); set aside as summary.json.damaged; "
                             f"resuming resnet-8-s0 from its checkpoint of iteration 30"]
    assert (path.parent / "summary.json.damaged").read_text() == "garbage\n"
    assert json.loads(path.read_text()) == summary and finished_summary(path.parent, cfg) == summary
    assert rows(cfg) == clean[1] and result(summary) == result(clean[0])


# 5. A full disk ----------------------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A real 300 KiB filesystem (tmpfs), to fill."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)], capture_output=True, text=True)
    except OSError as e:  # no mount command
        pytest.skip(f"cannot mount a tmpfs to fill: {e}")
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_leaves_no_tmp_files_and_no_torn_metrics_line(small_disk):
    big = {"x": "0" * 400_000}  # more than the disk holds
    summary = small_disk / "summary.json"
    write_json_atomic(summary, {"val_err": 10.0})
    with pytest.raises(OSError) as full:
        write_json_atomic(summary, big)
    assert full.value.errno == 28  # ENOSPC, for the caller to tell a full disk from a bug
    assert json.loads(summary.read_text()) == {"val_err": 10.0} and not list(small_disk.glob("*.tmp"))

    class Trainer:  # Lightning's save_checkpoint, as a full disk cuts it short
        def save_checkpoint(self, path):
            with open(path, "wb") as f:
                f.write(os.urandom(400_000))

    with pytest.raises(OSError):
        RecordCheckpoint(small_disk / "last.ckpt").save(Trainer())
    assert not list(small_disk.glob("*.tmp")) and not (small_disk / "last.ckpt").exists()

    # A metrics row that fits only in part: the row is refused whole, the rows before it stay readable.
    logger = RecordLogger(small_disk)
    logger.log_metrics({"iteration": 5.0, "val_err": 50.0})
    with open(small_disk / "filler", "wb", buffering=0) as f, pytest.raises(OSError):
        while True:
            f.write(b"\0" * 4096)
    with pytest.raises(OSError):
        logger.log_metrics({f"metric{i}": float(i) for i in range(1000)})
    assert (small_disk / "metrics.jsonl").read_text() == '{"iteration": 5.0, "val_err": 50.0}\n'
    assert logger.rows == [{"iteration": 5.0, "val_err": 50.0}]
