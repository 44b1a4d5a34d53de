import json

import pytest
import yaml

from lab.config import ConfigError, make_config
from lab.train.tracking import wandb_mode
from lab.records import run_dir_for
from lab.train import train
from tests.conftest import TINY_RECIPE, lab, train_until_killed


def test_train_writes_a_complete_run_record_and_an_offline_wandb_run(tmp_path):
    cfg = make_config(TINY_RECIPE, {"track.runs_dir": str(tmp_path), "model.arch": "plain", "train.seed": 3})
    summary = train(cfg)
    run_dir = run_dir_for(cfg)
    assert run_dir == tmp_path / "adhoc" / "plain-8-s3"
    assert {"config.yaml", "metrics.jsonl", "summary.json", "last.ckpt"} <= {p.name for p in run_dir.iterdir()}
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [5, 10]
    assert all({"train_err", "val_err", "test_err", "train_loss", "lr"} <= r.keys() for r in rows)
    assert rows[-1]["lr"] == pytest.approx(0.01)  # decayed at iteration 8
    assert summary["steps"] == 10 and summary["run"] == "plain-8-s3" and summary["params"] > 0
    assert summary["test_err"] == rows[-1]["test_err"] and 0 <= summary["train_err"] <= 100
    assert summary["config"] == cfg.to_dict() and summary["hardware"]["torch"]
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == cfg.to_dict()
    offline = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 1, "the W&B run is written offline beside the record, ready for `wandb sync`"


def test_finished_run_is_not_trained_again_and_a_changed_config_replaces_it_only_when_asked(tmp_path):
    cfg = make_config(TINY_RECIPE, {"track.runs_dir": str(tmp_path), "track.wandb": "disabled"})
    first = train(cfg)
    path = run_dir_for(cfg) / "summary.json"
    stamp = path.stat().st_mtime_ns
    assert train(cfg) == first and path.stat().st_mtime_ns == stamp
    assert not (run_dir_for(cfg) / "wandb").exists()
    changed = make_config(TINY_RECIPE, {"track.runs_dir": str(tmp_path), "track.wandb": "disabled", "optim.lr": 0.05})
    with pytest.raises(ConfigError, match=r"holds a run of another config \(optim.lr: 0.1 there, 0.05 here\)"):
        train(changed)
    assert path.stat().st_mtime_ns == stamp
    assert train(changed, overwrite=True)["config"]["optim"]["lr"] == 0.05


def test_a_killed_run_resumes_from_its_checkpoint_exactly(tmp_path, monkeypatch):
    recipe = {**TINY_RECIPE, "data": {"name": "digits", "crop_pad": 1, "flip": True},
              "optim": {**TINY_RECIPE["optim"], "max_steps": 30, "milestones": [25]}}
    straight = make_config(recipe, {"track.runs_dir": str(tmp_path / "straight"), "track.wandb": "disabled"})
    broken = make_config(recipe, {"track.runs_dir": str(tmp_path / "broken"), "track.wandb": "disabled"})
    train(straight)
    train_until_killed(broken, 17, monkeypatch)
    assert not (run_dir_for(broken) / "summary.json").exists()
    resumed = train(broken)  # from the checkpoint of iteration 15

    def rows(cfg):
        return [json.loads(line) for line in (run_dir_for(cfg) / "metrics.jsonl").read_text().splitlines()]

    assert [r["iteration"] for r in rows(broken)] == [5, 10, 15, 20, 25, 30]
    assert rows(broken) == rows(straight)  # as if never stopped: the same numbers, bit for bit
    assert resumed["steps"] == 30


def test_wandb_is_offline_without_an_api_key_and_online_with_one(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode("auto") == "online"
    assert wandb_mode("disabled") == "disabled"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode("auto") == "offline"


def test_online_wandb_that_cannot_reach_a_server_falls_back_to_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr("lab.train.tracking.WANDB_INIT_TIMEOUT_S", 5)
    cfg = make_config(TINY_RECIPE, {"track.runs_dir": str(tmp_path), "track.wandb": "online"})
    with pytest.warns(UserWarning, match="logging offline instead"):
        train(cfg)
    assert list((run_dir_for(cfg) / "wandb").glob("offline-run-*"))


def test_lab_train_command(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    result = lab("train", "tiny.yaml", "model.arch=plain", "track.runs_dir=runs", "track.study=demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "plain-8-s0: train_err" in result.stdout
    assert (tmp_path / "runs" / "demo" / "plain-8-s0" / "summary.json").is_file()


def test_a_run_recorded_before_a_config_field_existed_counts_it_at_its_default(tmp_path):
    """Records written by an older lab (no train.precision, no train.compile) are still this config's."""
    cfg = make_config(TINY_RECIPE, {"track.runs_dir": str(tmp_path), "track.wandb": "disabled"})
    first = train(cfg)
    path = run_dir_for(cfg) / "summary.json"
    old = json.loads(path.read_text())
    del old["config"]["train"]["precision"], old["config"]["train"]["compile"]
    path.write_text(json.dumps(old))
    stamp = path.stat().st_mtime_ns
    assert train(cfg)["test_err"] == first["test_err"] and path.stat().st_mtime_ns == stamp  # not trained again


def test_the_summary_appears_only_by_a_rename_so_no_reader_sees_half_of_it(tmp_path, monkeypatch):
    """A crash (here: the rename failing) while the summary is written leaves no summary: the run is unfinished."""
    import os

    cfg = make_config(TINY_RECIPE, {"track.runs_dir": str(tmp_path), "track.wandb": "disabled"})
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("summary.json"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        train(cfg)
    run_dir = run_dir_for(cfg)
    assert not (run_dir / "summary.json").exists() and not list(run_dir.glob("*.tmp"))


def test_a_run_stopped_early_is_not_finished(tmp_path):
    """Lightning may stop a fit early (a callback, a signal): such a run has no summary, and says so."""
    import pytorch_lightning as pl

    class StopAtFive(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step >= 5:
                trainer.should_stop = True

    cfg = make_config(TINY_RECIPE, {"track.runs_dir": str(tmp_path), "track.wandb": "disabled"})
    with pytest.raises(RuntimeError, match="training stopped at iteration 5 of 10"):
        train(cfg, callbacks=(StopAtFive(),))
    assert not (run_dir_for(cfg) / "summary.json").exists()
