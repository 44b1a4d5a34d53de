"""Optuna as its users use it (issue 15): the metric's name on the study, one intermediate value per evaluation,
and a pruner that stops bad trials, recorded as pruned in Optuna, in the run record and in the analysis."""
from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

from lab.sweep.spec import load_sweep
from tests.conftest import TINY_RECIPE, write_project

# 200 iterations (a few seconds): time for the coordinator, which reads the metrics every second, to stop a trial
RECIPE = {**TINY_RECIPE, "optim": {**TINY_RECIPE["optim"], "max_steps": 200, "milestones": [0.75]},
          "train": {**TINY_RECIPE["train"], "eval_every": 10}, "track": {"wandb": "disabled"}}
EVALUATIONS = list(range(10, 201, 10))


def _study(root):
    return optuna.load_study(study_name="tiny", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(root / "runs" / "tiny" / "optuna.journal"))))


@pytest.mark.slow
def test_a_median_pruner_stops_bad_trials_and_every_tool_says_so(lab_here, tmp_path):
    # lr 1e-5 learns nothing: once the two lr-0.1 trials (queued first) have finished, each 1e-5 trial is worse
    # than their median at its first evaluations
    root = write_project(tmp_path, {"grid": {"optim.lr": [0.1, 1.0e-5], "train.seed": [0, 1, 2]},
                                    "exclude": [{"optim.lr": 0.1, "train.seed": 2}],
                                    "pruner": {"name": "median", "n_startup_trials": 2}}, RECIPE)
    result = lab_here("sweep", "tiny", "--workers", "1", cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2/5 done, 3 pruned, 0 running, 0 failed, 0 remaining" in result.stdout, result.stdout
    assert "finished in " in result.stdout and ": 2/5 done, 3 pruned, 0 failed;" in result.stdout

    study = _study(root)
    assert study.metric_names == ["val_err"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert sorted(t.params["optim.lr"] for t in complete) == [0.1] * 2
    assert sorted(t.params["optim.lr"] for t in pruned) == [1.0e-5] * 3
    for t in complete:  # one intermediate value per evaluation, the last one the trial's value
        assert sorted(t.intermediate_values) == EVALUATIONS
        assert t.intermediate_values[200] == t.value
        rows = [json.loads(line) for line in (root / "runs" / "tiny" / t.user_attrs["run"] / "metrics.jsonl").read_text().splitlines()]
        assert {int(r["iteration"]): r["val_err"] for r in rows} == t.intermediate_values
    for t in pruned:
        at = t.user_attrs["pruned_at"]
        assert at < 200 and sorted(t.intermediate_values) == list(range(10, at + 1, 10))
        run = root / "runs" / "tiny" / t.user_attrs["run"]
        record = json.loads((run / "pruned.json").read_text())
        assert record["iteration"] == at and record["pruner"] == "median" and record["metric"] == "val_err"
        assert record["value"] == t.intermediate_values[at] and not (run / "summary.json").exists()
        assert f"pruned at iteration {at} (val_err" in (root / "runs" / "tiny" / "logs" / f"{t.user_attrs['run']}.log").read_text()
        assert f"| {t.user_attrs['run']} pruned at iteration {at}: val_err" in result.stdout

    status = lab_here("sweep", "tiny", "--status", cwd=root)
    assert "5 points: 2 done, 3 pruned, 0 running, 0 failed, 0 waiting" in status.stdout, status.stdout
    again = lab_here("sweep", "tiny", "--workers", "1", cwd=root)  # a pruned point is taken: nothing runs again
    assert "0 points queued" in again.stdout and "started" not in again.stdout, again.stdout

    analyzed = lab_here("analyze", "tiny", cwd=root)
    assert analyzed.returncode == 0, analyzed.stderr
    assert "lab analyze: left out 3 pruned runs: resnet-8-s0-t" in analyzed.stderr
    readme = (root / "runs" / "tiny" / "analysis" / "README.md").read_text()
    left_out = next(line for line in readme.splitlines() if "left out 3 pruned runs: " in line)
    assert left_out.count("(by the median pruner at iteration ") == 3
    summary = (root / "runs" / "tiny" / "analysis" / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 2  # the finished runs only


def test_shipped_lr_search_prunes_with_the_median_pruner():
    _, spec, _ = load_sweep("digits-lr")
    pruner = spec.make_pruner()
    assert isinstance(pruner, optuna.pruners.MedianPruner)
    _, depth_study, _ = load_sweep("depth-study")
    assert isinstance(depth_study.make_pruner(), optuna.pruners.NopPruner)  # a depth study runs every net to the end


@pytest.mark.parametrize("pruner,message", [
    ("bogus", "pruner: 'bogus' is not one of none, median, hyperband"),
    ({"name": "median", "n_warm": 5}, "pruner.n_warm: not an argument of Optuna's MedianPruner (known: n_startup_trials, "
                                      "n_warmup_steps, interval_steps, n_min_trials)"),
    ({"name": "median", "n_startup_trials": -1}, "pruner: median: "),
])
def test_a_bad_pruner_is_refused_in_one_line(tmp_path, lab_here, pruner, message):
    root = write_project(tmp_path, {"grid": {"train.seed": [0]}, "pruner": pruner})
    result = lab_here("sweep", "tiny", cwd=root)
    assert result.returncode == 2 and result.stderr.startswith("lab sweep: error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1 and not (root / "runs").exists()
