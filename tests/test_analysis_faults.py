"""Faults in a study's records: ``lab analyze`` names each one and writes nothing (or, with ``--partial``, says
what it left out); failed runs are left out of every table and figure, and counted."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from lab.config import make_config
from tests.conftest import TINY_RECIPE

STUDY = "tiny"
RUNS = [f"resnet-8-s{seed}" for seed in range(3)]  # what lab.train names the tiny recipe's runs, seeds 0-2
AGAIN = "lab analyze: run `lab sweep tiny` to run them again, or pass --partial to analyze the runs that are there"


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    """Three finished runs of the tiny recipe (seeds 0, 1, 2), trained here: copied into each test's study."""
    from lab.train import train

    root = tmp_path_factory.mktemp("records")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for seed in range(3):
            summary = train(make_config(TINY_RECIPE, {"train.seed": seed, "track.runs_dir": str(root),
                                                      "track.study": STUDY, "track.wandb": "disabled"}))
            assert summary["run"] == RUNS[seed]
    finally:
        torch.set_num_threads(threads)
    return root / STUDY


def copy_study(records: Path, project: Path) -> Path:
    study_dir = project / "runs" / STUDY
    shutil.copytree(records, study_dir)
    return study_dir


def write_journal(path: Path, trials: list[tuple], lost: tuple[int, ...] = ()) -> None:
    """The study as ``lab sweep`` leaves it in its journal: trial i ran (RUN, STATE[, GRID]), by default grid point
    ``train.seed: i``; ``lost``: complete trials the sweep found without their record (a search runs new ones)."""
    study = optuna.create_study(study_name=STUDY, storage=JournalStorage(JournalFileBackend(str(path))))
    for number, (run, state, *point) in enumerate(trials):
        trial = study.ask()
        grid = point[0] if point else {"train.seed": number}
        if grid is not None:
            trial.set_user_attr("grid", grid)
        trial.set_user_attr("run", run)
        if state == TrialState.COMPLETE:
            study.tell(trial, 10.0)
        elif state == TrialState.FAIL:
            study.tell(trial, state=TrialState.FAIL)  # RUNNING: left as it is
    if lost:
        study.set_user_attr("lost_records", {str(n): "its record is gone" for n in lost})


def said(result) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("lab analyze:")]


def test_complete_trials_without_their_runs_fail_analyze_until_partial(lab_here, records, tmp_path):
    study_dir = copy_study(records, tmp_path)
    write_journal(study_dir / "optuna.journal", [(run, TrialState.COMPLETE) for run in RUNS])
    shutil.rmtree(study_dir / RUNS[1])  # deleted by hand while its trial stays COMPLETE
    (study_dir / RUNS[2] / "summary.json").unlink()

    result = lab_here("analyze", STUDY, cwd=tmp_path)
    assert result.returncode == 1
    assert said(result) == [
        "lab analyze: resnet-8-s1: trial 1 finished but runs/tiny/resnet-8-s1 is missing",
        "lab analyze: resnet-8-s2: trial 2 finished but runs/tiny/resnet-8-s2 has no summary.json",
        AGAIN,
    ]
    assert not (study_dir / "analysis").exists(), "nothing written: the tables would look complete over 1 seed"

    # The study's storage given as `lab sweep --storage` took it, here a journal somewhere else.
    journal = (study_dir / "optuna.journal").rename(tmp_path / "elsewhere.journal")
    result = lab_here("analyze", STUDY, "--storage", str(journal), "--partial", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "lab analyze: resnet-8-s1: trial 1 finished but runs/tiny/resnet-8-s1 is missing" in said(result)
    out = study_dir / "analysis"
    assert list(pd.read_csv(out / "summary.csv")["run"]) == [RUNS[0]]
    readme = (out / "README.md").read_text()
    assert "trial 1 finished but runs/tiny/resnet-8-s1 is missing" in readme
    assert "trial 2 finished but runs/tiny/resnet-8-s2 has no summary.json" in readme
    assert "--partial" in (out / "degradation.caption.txt").read_text()

    result = lab_here("analyze", STUDY, "--storage", str(tmp_path / "missing.journal"), cwd=tmp_path)
    assert result.returncode == 2 and "missing.journal" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "missing.journal").exists()


def test_unreadable_summaries_and_torn_metrics_lines_are_named_with_their_files(lab_here, records, tmp_path):
    study_dir = copy_study(records, tmp_path)
    (study_dir / RUNS[0] / "summary.json").write_bytes(b"\x00\x17garbage{")
    (study_dir / RUNS[2] / "summary.json").write_text(json.dumps({"run": RUNS[2], "test_err": "n/a"}))
    metrics = study_dir / RUNS[1] / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    assert len(lines) >= 2
    metrics.write_text("\n".join([lines[0][:20], *lines[1:]]) + "\n")  # line 1 cut off mid-write

    result = lab_here("analyze", STUDY, cwd=tmp_path)
    assert result.returncode == 1
    problems = said(result)
    assert problems[-1] == AGAIN and len(problems) == 4
    assert problems[0].startswith("lab analyze: resnet-8-s0: runs/tiny/resnet-8-s0/summary.json is not readable (")
    assert problems[1].startswith("lab analyze: resnet-8-s2: runs/tiny/resnet-8-s2/summary.json is not a summary (no ")
    assert problems[2].startswith("lab analyze: resnet-8-s1: runs/tiny/resnet-8-s1/metrics.jsonl line 1 is not readable (")
    assert not (study_dir / "analysis").exists()

    result = lab_here("analyze", STUDY, "--partial", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = study_dir / "analysis"
    assert list(pd.read_csv(out / "summary.csv")["run"]) == [RUNS[1]]
    curves = pd.read_csv(out / "curves.csv")
    assert list(curves["run"]) == [RUNS[1]] * (len(lines) - 1)  # the readable lines of its metrics
    readme = (out / "README.md").read_text()
    for line in problems[:3]:
        assert line.removeprefix("lab analyze: ") in readme


def test_failed_runs_are_left_out_of_every_output_and_counted(lab_here, records, tmp_path):
    study_dir = copy_study(records, tmp_path)
    failed = study_dir / RUNS[2]
    (failed / "summary.json").unlink()
    (failed / "failure.json").write_text(json.dumps({"run": RUNS[2], "reason": "diverged at iteration 37"}))
    shutil.copytree(failed, study_dir / "resnet-8-s3", ignore=shutil.ignore_patterns("failure.json"))  # in progress
    write_journal(study_dir / "optuna.journal", [(RUNS[0], TrialState.COMPLETE), (RUNS[1], TrialState.COMPLETE),
                                                 (RUNS[2], TrialState.FAIL), ("resnet-8-s3", TrialState.RUNNING)])

    result = lab_here("analyze", STUDY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert said(result) == ["lab analyze: left out 1 failed run: resnet-8-s2 (diverged at iteration 37)"]
    out = study_dir / "analysis"
    for table in ("summary", "curves", "layer_responses"):
        assert set(pd.read_csv(out / f"{table}.csv")["run"]) == set(RUNS[:2]), table
    statement = "left out 1 failed run: resnet-8-s2 (diverged at iteration 37)"
    assert statement in (out / "README.md").read_text()
    for caption in out.glob("*.caption.txt"):
        assert statement in caption.read_text(), caption.name


def test_a_lost_run_that_ran_again_as_another_trial_is_no_problem(records, tmp_path):
    """``lab sweep`` runs the point of a complete trial whose record was lost again, as a new trial (``-t#`` names
    when run names do not tell trials apart); a search's lost trial is counted out of the study and replaced."""
    from analysis.runs import read_study

    study_dir = copy_study(records, tmp_path)
    (study_dir / "resnet-8-s0-t0").mkdir()
    (study_dir / "resnet-8-s0-t0" / "summary.json").write_text("{torn")  # damaged; trial 3 ran its point again
    write_journal(study_dir / "optuna.journal", [
        ("resnet-8-s0-t0", TrialState.COMPLETE, {"train.seed": 0}), ("resnet-8-s1", TrialState.COMPLETE),
        ("resnet-8-s2", TrialState.COMPLETE), ("resnet-8-s0", TrialState.COMPLETE, {"train.seed": 0}),
        ("search-t4", TrialState.COMPLETE, None), ("search-t5", TrialState.COMPLETE, None),
    ], lost=(0, 4))
    found = read_study(tmp_path / "runs", STUDY)
    assert found.problems == [f"search-t5: trial 5 finished but {study_dir / 'search-t5'} is missing"]
    assert sorted(found.runs["run"]) == RUNS and not found.failed
