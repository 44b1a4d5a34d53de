"""A newcomer's first hour (issue 15): overrides that just work, a config to see before it runs, nothing
overwritten by accident."""
from __future__ import annotations

import json

import pytest
import yaml

from lab.config import flat, load_config, make_config
from tests.conftest import ROOT, TINY_RECIPE, lab, write_project


@pytest.mark.parametrize("max_steps,milestones,expected", [(64_000, [0.5, 0.75], [32_000, 48_000]), (160, [0.75], [120]),
                                                          (100, [0.75], [75]), (10, [8], [8]), (3, [0.1], [1])])
def test_milestones_as_fractions_of_max_steps(max_steps, milestones, expected):
    cfg = make_config(TINY_RECIPE, {"optim.max_steps": max_steps, "optim.milestones": milestones})
    assert cfg.optim.milestone_steps == expected


def test_shipped_recipes_state_milestones_as_fractions():
    """The paper's 32k and 48k of 64k, and digits' 120 of 160, kept when a user shortens the run."""
    for recipe, steps in (("cifar10", [32_000, 48_000]), ("cifar10-resnet110", [32_000, 48_000]), ("digits", [120])):
        cfg = load_config(ROOT / "experiments" / f"{recipe}.yaml")
        assert all(isinstance(m, float) for m in cfg.optim.milestones), recipe
        assert cfg.optim.milestone_steps == steps, recipe
    short = load_config(ROOT / "experiments" / "digits.yaml", {"optim.max_steps": 100})
    assert short.optim.milestone_steps == [75]


def test_a_shorter_run_needs_one_override_and_its_curves_end_at_max_steps(tmp_path):
    """`optim.max_steps=N` alone: no eval_every to divide it, no milestones to move; the last row is at N."""
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({**TINY_RECIPE, "optim": {**TINY_RECIPE["optim"], "milestones": [0.8]}}))
    result = lab("train", "tiny.yaml", "optim.max_steps=12", "track.wandb=disabled", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "runs/adhoc/resnet-8-s0/metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows] == [5, 10, 12]  # eval_every 5, and the end
    assert rows[-1]["lr"] == pytest.approx(0.01)  # 0.8 of 12: lr / 10 from iteration 10
    summary = json.loads((tmp_path / "runs/adhoc/resnet-8-s0/summary.json").read_text())
    assert summary["steps"] == 12 and summary["test_err"] == rows[-1]["test_err"]


def test_train_print_config_shows_the_resolved_config_and_writes_nothing(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    result = lab("train", "tiny.yaml", "--print-config", "model.depth=14", "optim.milestones=[0.5]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# tiny.yaml model.depth=14 optim.milestones=[0.5]: run resnet-14-s0; "
                                    "lr x 0.1 at iterations [5]\n")
    printed = yaml.safe_load(result.stdout)
    assert make_config(printed).to_dict() == make_config(TINY_RECIPE, {"model.depth": 14, "optim.milestones": [0.5]}).to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]  # no runs/, nothing else


def test_sweep_print_config_shows_every_trial_and_writes_nothing(tmp_path):
    root = write_project(tmp_path, {"grid": {"model.arch": ["plain", "resnet"], "train.seed": [0, 1]},
                                    "when": [{"match": {"model.arch": "plain"}, "set": {"optim.lr": 0.05}}]})
    result = lab("sweep", "tiny", "--print-config", "optim.max_steps=20", cwd=root)
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["sweep"]["grid"] == {"model.arch": ["plain", "resnet"], "train.seed": [0, 1]}
    assert [t["run"] for t in printed["trials"]] == ["plain-8-s0", "plain-8-s1", "resnet-8-s0", "resnet-8-s1"]
    assert printed["trials"][0] == {"run": "plain-8-s0", "model.arch": "plain", "optim.lr": 0.05, "train.seed": 0}
    assert printed["config"]["optim"]["max_steps"] == 20 and printed["config"]["track"]["study"] == "tiny"
    # shared config + a trial's own values = the config that trial runs
    trial = printed["trials"][3]
    rebuilt = {**flat(printed["config"]), **{k: v for k, v in trial.items() if k != "run"}}
    assert rebuilt == flat(make_config(TINY_RECIPE, {"model.arch": "resnet", "train.seed": 1, "optim.max_steps": 20,
                                                     "track.study": "tiny"}))
    assert not (root / "runs").exists()


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_train_with_another_config_leaves_the_first_record_as_it_was(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    first = lab("train", "tiny.yaml", cwd=tmp_path)  # W&B offline: its files are part of the record
    assert first.returncode == 0, first.stderr
    run = tmp_path / "runs/adhoc/resnet-8-s0"
    before = _snapshot(run)
    assert any(p.parts[0] == "wandb" for p in before)
    again = lab("train", "tiny.yaml", "optim.lr=0.05", cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr == ("lab train: error: runs/adhoc/resnet-8-s0 holds a run of another config (optim.lr: 0.1 there, "
                            "0.05 here); to keep both, give this one another track.study=NAME or --name NAME; to replace "
                            "it, --overwrite\n")
    assert again.stdout == ""
    assert _snapshot(run) == before  # byte for byte
    same = lab("train", "tiny.yaml", cwd=tmp_path)  # the same config: its result, not trained again
    assert same.returncode == 0 and "after 10 iterations (already finished); record: runs/adhoc/resnet-8-s0" in same.stdout
    assert _snapshot(run) == before
    named = lab("train", "tiny.yaml", "optim.lr=0.05", "--name", "resnet-8-lr0.05", "track.wandb=disabled", cwd=tmp_path)
    assert named.returncode == 0, named.stderr
    assert "record: runs/adhoc/resnet-8-lr0.05" in named.stdout
    assert _snapshot(run) == before
    replaced = lab("train", "tiny.yaml", "optim.lr=0.05", "--overwrite", "track.wandb=disabled", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["lr"] == 0.05


@pytest.mark.parametrize("name", ["", "a/b", ".."])
def test_train_refuses_a_name_that_is_not_a_folder(tmp_path, name):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    result = lab("train", "tiny.yaml", "--name", name, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith(f"lab train: error: --name: {name!r} is not a folder name")
    assert not (tmp_path / "runs").exists()
