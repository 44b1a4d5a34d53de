"""Every sweep shipped in sweeps/ runs end to end as shipped (grid, exclusions, per-point settings), with its
recipe overridden to a few iterations on generated data in the real on-disk formats, and is analysed."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lab.config import make_config
from tests.conftest import ROOT, write_cifar10, write_imagefolder

SHIPPED = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))
FEW_STEPS = ["optim.max_steps=2", "optim.milestones=[1]", "train.eval_every=1", "train.device=cpu"]


def overrides_for(recipe: str, data: Path) -> list[str]:
    """Make one trial of ``recipe`` take seconds on generated data of its format."""
    name = yaml.safe_load((ROOT / "experiments" / f"{recipe}.yaml").read_text())["data"]["name"]
    if name == "digits":
        return [*FEW_STEPS, "optim.batch_size=16"]
    if name == "cifar10":
        write_cifar10(data, n_train=60, n_test=10)
        return [*FEW_STEPS, f"data.data_dir={data}", "data.verify_md5=false", "data.val_size=10", "optim.batch_size=4"]
    if name == "imagefolder":  # Section 3.4's scale augmentation, shrunk: [36, 48] and a 32 crop
        write_imagefolder(data, classes=3, per_class=6)
        small = ["data.scale=[36,48]", "data.crop=32", "data.eval_resize=36", "data.val_size=3", "data.mean_images=6",
                 "data.workers=0", "optim.batch_size=4", "optim.milestones=[]", "optim.plateau_patience=1"]
        return [*FEW_STEPS[:1], *FEW_STEPS[2:], f"data.data_dir={data}", *small]
    raise AssertionError(f"no test data for recipe {recipe} ({name})")


@pytest.mark.slow
@pytest.mark.parametrize("sweep", SHIPPED)
def test_shipped_sweep_runs_end_to_end(tmp_path, lab_here, sweep):
    spec = yaml.safe_load((ROOT / "sweeps" / f"{sweep}.yaml").read_text())
    args = overrides_for(spec["recipe"], tmp_path / "data")
    planned = lab_here("sweep", sweep, "--dry-run", *args, cwd=tmp_path)  # in-process: it starts no trial
    assert planned.returncode == 0, planned.stderr
    names = [line.split()[0] for line in planned.stdout.splitlines() if line.startswith("  ") and "-s" in line]

    result = lab_here("sweep", sweep, *args, "--runs-dir", "runs", "--workers", "2", "--wandb", "disabled", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = tmp_path / "runs" / sweep
    summaries = {p.parent.name: json.loads(p.read_text()) for p in runs.glob("*/summary.json")}
    if spec.get("grid"):  # every planned grid point ran once, under the name the dry run gave it
        assert sorted(summaries) == sorted(names)
    else:
        assert len(summaries) == spec["n_trials"]
    assert Counter(s["steps"] for s in summaries.values()) == Counter({2: len(summaries)})
    recipe = make_config(yaml.safe_load((ROOT / "experiments" / f"{spec['recipe']}.yaml").read_text()), spec.get("fixed"))
    for when in spec.get("when", []):  # per-point settings reached exactly the matching runs; the others kept the recipe's
        for summary in summaries.values():
            field = lambda config, key: config[key.split(".")[0]][key.split(".")[1]]  # noqa: E731
            matched = all(field(summary["config"], k) in (v if isinstance(v, list) else [v]) for k, v in when["match"].items())
            for key, value in when["set"].items():
                expected = value if matched else field(recipe.to_dict(), key)
                assert field(summary["config"], key) == expected, (summary["run"], key)

    analyzed = lab_here("analyze", sweep, "--runs-dir", "runs", cwd=tmp_path)
    assert analyzed.returncode == 0, analyzed.stderr
    out = runs / "analysis"
    assert len(pd.read_csv(out / "summary.csv")) == len(summaries)
    if "ablation" in sweep:  # the Table 3-style comparison of shortcut options, plain included
        table = pd.read_csv(out / "shortcuts.csv")
        assert {"A", "B", "C"} <= set(table["shortcut"]) and "plain" in set(table["arch"])
        assert {"diff", "ci_low", "ci_high", "p", "verdict", "compared_with"} <= set(table.columns)
        assert set(table["verdict"]) <= {"better", "worse", "no detectable difference", "too few seeds", "reference"}
    if summaries and next(iter(summaries.values()))["dataset"] == "cifar10" and "depth" in sweep:
        table6 = pd.read_csv(out / "table6.csv")  # ours beside He 2015 Table 6, for every net the paper reports
        assert set(table6["net"]) >= {"resnet-20", "resnet-110", "plain-56"}, table6
