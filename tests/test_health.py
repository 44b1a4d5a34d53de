"""Unstable runs are marked, not hidden and not failed: summary.json, the sweep's line, --status, lab analyze."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from analysis.report import write_report
from lab.config import make_config
from lab.health import run_warnings
from lab.train import train
from tests.conftest import TINY_RECIPE, write_project
from tests.studies import write_record


def rows(*peaks: float, initial: float = 2.4, last_err: float = 1.0) -> list[dict]:
    """Metrics rows every 20 iterations with these single-batch loss maxima (``train_loss_max``)."""
    out = [{"iteration": 20.0 * (i + 1), "train_loss_max": peak, "train_err": 50.0, "val_loss": 1.0}
           for i, peak in enumerate(peaks)]
    out[0]["train_loss_initial"] = initial
    out[-1]["train_err"] = last_err
    return out


def test_a_loss_that_climbs_to_twice_its_start_is_a_spike_named_by_its_interval():
    assert run_warnings(rows(3.3, 2.0, 0.5), 10) == []  # never above where it started (ln 10 = 2.30)
    assert run_warnings(rows(3.3, 16.2, 0.5, initial=3.33), 10) == [
        "train loss 16.2 between iterations 21 and 40 (started at 3.33; chance 2.30)"]
    # a deep net that starts at 5.2 (resnet-110 at initialisation) is not marked for where it started
    assert run_warnings(rows(5.2, 9.9, initial=5.2), 10) == []
    # the first run of a record from before train_loss_initial existed: against chance alone
    legacy = [{k: v for k, v in r.items() if k != "train_loss_initial"} for r in rows(3.0, 4.7)]
    assert run_warnings(legacy, 10) == ["train loss 4.7 between iterations 21 and 40 (chance 2.30)"]


def test_a_run_that_ends_near_chance_is_marked():
    assert run_warnings(rows(2.3, last_err=85.0), 10) == ["ended near chance: train_err 85.0% (chance 90.0%)"]
    assert run_warnings(rows(2.3, last_err=60.0), 10) == []  # plain-56 at 60%: degraded, not at chance
    assert run_warnings([], 10) == []


def test_a_run_at_chance_carries_its_warning_in_summary_and_lab_train_says_so(tmp_path):
    recipe = {**TINY_RECIPE, "optim": {**TINY_RECIPE["optim"], "lr": 1e-6},
              "track": {"wandb": "disabled", "runs_dir": str(tmp_path / "runs")}}
    summary = train(make_config(recipe))
    assert summary["num_classes"] == 10 and summary["warnings"] and summary["warnings"][0].startswith("ended near chance")
    record = json.loads(next((tmp_path / "runs").glob("*/*/summary.json")).read_text())
    assert record["warnings"] == summary["warnings"]
    first = json.loads((tmp_path / "runs" / "adhoc" / "resnet-8-s0" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["train_loss_initial"] <= first["train_loss_max"]


def test_lab_analyze_names_marked_runs_and_summary_csv_has_their_warnings(tmp_path):
    study = tmp_path / "runs" / "ablation"
    for seed, peak in ((0, 16.2), (1, 2.5), (2, 2.4)):
        run_dir = write_record(study, "resnet", 56, "A", seed, 5.0, {"name": "digits"})
        lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        lines[0].update(train_loss_initial=3.3, train_loss_max=peak)
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        summary = json.loads((run_dir / "summary.json").read_text())
        summary["warnings"] = run_warnings(lines, 10)  # as lab.train writes it
        if seed == 2:
            del summary["warnings"]  # a summary from before lab.health: lab analyze checks its rows itself
        (run_dir / "summary.json").write_text(json.dumps(summary))
    write_report(tmp_path / "runs", "ablation", tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "summary.csv", keep_default_na=False).set_index("run")
    assert table.loc["resnet-56-s0", "warnings"].startswith("train loss 16.2 between iterations 1 and 10")
    assert table.loc["resnet-56-s1", "warnings"] == table.loc["resnet-56-s2", "warnings"] == ""
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "## Marked runs" in readme and "- resnet-56-s0: train loss 16.2" in readme and "resnet-56-s1:" not in readme
    caption = (tmp_path / "out" / "degradation.caption.txt").read_text()
    assert "Marked as unstable" in caption and "resnet-56-s0" in caption


@pytest.mark.slow
def test_the_sweeps_line_and_status_show_a_marked_run(lab_here, tmp_path):
    recipe = {**TINY_RECIPE, "optim": {**TINY_RECIPE["optim"], "lr": 1e-6}}
    write_project(tmp_path, {"metric": "val_err", "grid": {"train.seed": [0]}}, recipe=recipe)
    result = lab_here("sweep", "tiny", "--workers", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resnet-8-s0 done in" in result.stdout and "WARNING: ended near chance" in result.stdout
    status = lab_here("sweep", "tiny", "--status", cwd=tmp_path)
    assert "1 done (1 marked)" in status.stdout and "marked   resnet-8-s0: trial 0: ended near chance" in status.stdout
