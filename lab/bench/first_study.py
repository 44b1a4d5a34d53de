"""``lab bench --first-study``: ``lab sweep depth-study`` timed as a new user runs it, and the paper's result checked on
every seed."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from lab.bench.training import _cores

FIRST_STUDY, FIRST_STUDY_BUDGET_S = "depth-study", 300.0  # the first command every user runs: under 5 minutes


def run_first_study(out: Path | None = None, workers: int | None = None, echo: Any = print) -> dict[str, Any]:
    """``lab sweep depth-study`` as a new user runs it (the shipped sweep, its own processes, W&B as configured),
    timed against its 5-minute budget, and the paper's result checked on every seed: ResNet-56's training error
    within 3 points of ResNet-20's and plain-56's at least 15 points above plain-20's."""
    from analysis.runs import load_runs

    with tempfile.TemporaryDirectory(prefix="lab-first-study-") as tmp:
        runs_dir = Path(tmp) / "runs"
        command = [sys.executable, "-m", "lab", "sweep", FIRST_STUDY, "--runs-dir", str(runs_dir)]
        command += ["--workers", str(workers)] if workers else []
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall_s = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"lab sweep {FIRST_STUDY} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        runs, _ = load_runs(runs_dir, FIRST_STUDY)
    err = runs.set_index(["arch", "depth", "seed"])["train_err"]
    seeds = []
    for seed in sorted(runs["seed"].unique()):
        r20, r56, p20, p56 = (float(err[(a, d, seed)]) for a, d in (("resnet", 20), ("resnet", 56), ("plain", 20), ("plain", 56)))
        seeds.append({"seed": int(seed), "resnet20": r20, "resnet56": r56, "plain20": p20, "plain56": p56,
                      "resnet_trains": r56 <= r20 + 3, "plain_degrades": p56 >= p20 + 15})
    report = {"study": FIRST_STUDY, "trials": len(runs), "workers": workers, "cores": _cores(), "torch": torch.__version__,
              "wall_s": wall_s, "budget_s": FIRST_STUDY_BUDGET_S, "of_budget": wall_s / FIRST_STUDY_BUDGET_S,
              "trial_wall_s": float(runs["wall_s"].sum()), "marked": int((runs["warnings"].fillna("") != "").sum()),
              "seeds": seeds}
    table = "\n".join([
        f"lab sweep {FIRST_STUDY}: {len(runs)} trials in {wall_s:.0f} s on {_cores()} cores "
        f"({report['of_budget']:.2f} of the {FIRST_STUDY_BUDGET_S:.0f} s budget; trials' own training time "
        f"{report['trial_wall_s']:.0f} s); {report['marked']} run(s) marked unstable", "",
        "| seed | ResNet-20 train err | ResNet-56 | plain-20 | plain-56 | ResNet-56 within 3 | plain-56 15+ above |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(f"| {r['seed']} | {r['resnet20']:.2f} | {r['resnet56']:.2f} | {r['plain20']:.2f} | {r['plain56']:.2f} | "
          f"{'yes' if r['resnet_trains'] else 'NO'} | {'yes' if r['plain_degrades'] else 'NO'} |" for r in seeds),
    ]) + "\n"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        out.with_suffix(".md").write_text(table)
    echo(table)
    return report
