"""``lab sweep --launcher slurm`` on a real one-node SLURM (tests/slurm/cluster.py starts and stops it):
a whole sweep in two tasks, a task preempted mid-trial, a task killed mid-trial, ``--status`` throughout.

Each test starts its own munged/slurmctld/slurmd (about a second) and stops them, leaving nothing running.
Without SLURM's packages (or not as root) they skip, saying why; under ``CI=1`` they fail instead.
"""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from collections import Counter
from functools import cache
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.pool import NullPool

from lab.sweep import slurm
from tests.conftest import POSTGRES, TINY_RECIPE, write_project
from tests.test_sharing_secrets import SECRET, holding, secret_url
from tests.slurm.cluster import Cluster, unavailable


GRID = {"grid": {"model.arch": ["plain", "resnet"], "train.seed": [0, 1]}}
# long enough to be caught mid-trial (an evaluation, so a checkpoint, every 5 iterations): 10-60 s a trial,
# on 2 idle or busy cores
LONG = {**TINY_RECIPE, "optim": {**TINY_RECIPE["optim"], "max_steps": 200, "milestones": [150]}}


@pytest.fixture
def cluster(tmp_path):
    problem = unavailable()
    if problem:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"no SLURM to test with: {problem}")
    with Cluster(tmp_path / "slurm") as c:
        yield c
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path / "slurm")], capture_output=True, text=True).stdout.split()
    assert not leftover, f"processes left running: {leftover}"


def lab(cluster: Cluster, root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **cluster.env, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "lab", *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def status(cluster: Cluster, root: Path, name: str) -> tuple[dict[str, int], str]:
    result = lab(cluster, root, "sweep", name, "--status", "--storage", POSTGRES)
    assert result.returncode == 0, result.stdout + result.stderr
    m = re.search(r"(\d+) done, (\d+) running, (\d+) failed, (\d+) waiting", result.stdout)
    assert m, result.stdout
    return dict(zip(("done", "running", "failed", "waiting"), map(int, m.groups()))), result.stdout


def submit(cluster: Cluster, root: Path, name: str, tasks: int, storage: str = POSTGRES) -> str:
    result = lab(cluster, root, "sweep", name, "--launcher", "slurm", "--storage", storage, "--tasks", str(tasks),
                 "--workers", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr
    return re.search(r"submitted SLURM job (\d+)", result.stdout).group(1)


def wait_for(what: str, ready, cluster: Cluster, timeout: float = 240, root: Path | None = None) -> None:
    """Poll ``ready`` once a second until ``timeout``; on failure say what SLURM and (under ``root``) the tasks' logs
    show. Not faster: a check may start a process, and the tasks it waits for share the machine's 2 cores."""
    deadline = time.time() + timeout
    while not ready():
        if time.time() >= deadline:
            logs = "".join(f"\n--- {p.name}:\n{p.read_text()[-3000:]}" for p in sorted(root.glob("runs/*/slurm/*.out"))) \
                if root else ""
            raise AssertionError(f"{what}: not within {timeout}s; jobs {cluster.jobs()}{logs}")
        time.sleep(1)


@cache
def storage() -> optuna.storages.RDBStorage:
    """The test's one handle on the study database, holding no connection between reads: a handle per poll would keep
    its pooled connections open until PostgreSQL refuses more clients (CI saw "too many clients already")."""
    return optuna.storages.RDBStorage(POSTGRES, engine_kwargs={"poolclass": NullPool})


def all_done(name: str, points: int, cluster: Cluster) -> bool:
    """``points`` trials complete and no job left: read in-process (a `lab sweep --status` per poll would take a core)."""
    return sum(complete_points(name).values()) == points and not cluster.jobs()


def complete_points(name: str) -> Counter:
    study = optuna.load_study(study_name=name, storage=storage())
    return Counter(json.dumps(t.user_attrs["grid"], sort_keys=True) for t in study.get_trials(states=(TrialState.COMPLETE,)))


def trained(name: str) -> list[optuna.trial.FrozenTrial]:
    """Trials that started training (an owner was set)."""
    return [t for t in optuna.load_study(study_name=name, storage=storage()).trials if "worker" in t.user_attrs]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.postgres
def test_a_sweep_in_two_slurm_tasks_runs_every_point_once(cluster, study_name, tmp_path):
    root = write_project(tmp_path / "project", GRID, LONG, name=study_name)  # trials long enough to be seen running
    job = submit(cluster, root, study_name, tasks=2, storage=secret_url())  # its password reaches the tasks, nothing else
    counts, _ = status(cluster, root, study_name)
    assert counts["done"] == 0 and counts["done"] + counts["running"] + counts["waiting"] == 4
    seen_running = []

    def finished() -> bool:
        c, text = status(cluster, root, study_name)
        if c["running"]:
            seen_running.append(text)
        return c["done"] == 4 and not cluster.jobs()

    wait_for("4 points done and the job ended", finished, cluster, root=root)
    assert any(f"SLURM job {job}_" in text and "on " in text for text in seen_running), seen_running
    assert sorted(complete_points(study_name).values()) == [1] * 4
    assert len(trained(study_name)) == 4 and {t.user_attrs["slurm_job"] for t in trained(study_name)} == {f"{job}_0", f"{job}_1"}
    runs = root / "runs" / study_name
    assert sorted(p.parent.name for p in runs.glob("*/summary.json")) == ["plain-8-s0", "plain-8-s1", "resnet-8-s0", "resnet-8-s1"]
    counts, text = status(cluster, root, study_name)
    assert counts == {"done": 4, "running": 0, "failed": 0, "waiting": 0} and "no job of the study is queued" in text
    analyzed = lab(cluster, root, "analyze", study_name, "--storage", POSTGRES)
    assert analyzed.returncode == 0, analyzed.stderr
    assert (runs / "analysis" / "summary.csv").read_text().count("\n") == 5
    assert list(runs.glob("*/wandb/offline-run-*/run-*.wandb")) and list((runs / "slurm").glob("*.out"))
    assert holding(root, SECRET) == [f"runs/{study_name}/slurm/storage.url"]  # the tasks' logs, W&B's files: none
    assert stat.S_IMODE((runs / "slurm" / "storage.url").stat().st_mode) == 0o600


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.postgres
def test_a_preempted_task_is_requeued_and_resumes_its_trial_from_the_checkpoint(cluster, study_name, tmp_path):
    # 600 iterations: a clean-clone CI run once saw all 200 of LONG's done before the preemption landed
    longer = {**LONG, "optim": {**LONG["optim"], "max_steps": 600, "milestones": [450]}}
    root = write_project(tmp_path / "project", {"grid": {"train.seed": [0]}}, longer, name=study_name)
    job = submit(cluster, root, study_name, tasks=1)
    task = f"{job}_0"
    metrics = root / "runs" / study_name / "resnet-8-s0" / "metrics.jsonl"
    wait_for("the trial past its first evaluation", lambda: metrics.is_file() and len(rows(metrics)) >= 1, cluster)
    # a job of the higher-priority partition that needs the whole node preempts the task
    high = cluster.run("sbatch", "--parsable", "-p", "high", "-c", str(cluster.cpus), "--wrap", "sleep 2", check=True).stdout.strip()
    wait_for("the task requeued", lambda: cluster.jobs().get(task, ("",))[0] == "PENDING", cluster, 60)
    assert len(rows(metrics)) < 120  # stopped mid-trial
    counts, text = status(cluster, root, study_name)
    assert counts == {"done": 0, "running": 0, "failed": 0, "waiting": 1}, text
    assert "continues trial 0 from its checkpoint" in text and f"{task} PENDING" in text
    wait_for("the high-priority job done", lambda: high not in cluster.jobs(), cluster, 60)
    cluster.release(task)  # else it waits ~150 s (Reason=BeginTime)
    wait_for("the point done", lambda: all_done(study_name, 1, cluster), cluster,
             root=root)

    study = optuna.load_study(study_name=study_name, storage=storage())
    first, second = trained(study_name)
    assert first.state == TrialState.FAIL and first.user_attrs["failure"].startswith(f"released: SLURM job {task} got ")
    assert second.state == TrialState.COMPLETE and second.user_attrs["continues"] == first.number
    assert second.user_attrs["run"] == first.user_attrs["run"] == "resnet-8-s0"
    assert sorted(complete_points(study_name).values()) == [1] and len(study.trials) == 2
    log = (root / "runs" / study_name / "slurm" / f"{job}_0.out").read_text()
    assert "start 0" in log and "start 1" in log, log  # the same task, requeued
    trial_log = (root / "runs" / study_name / "logs" / "resnet-8-s0.log").read_text()
    # checkpointed at the signal when the trial process reached the end of its step first; else (SLURM's SIGTERM
    # also stopped its W&B service, which ended it) it resumed from its last evaluation's checkpoint: exact both ways
    saved = re.search(r"SIG(TERM|USR1): checkpoint of iteration (\d+) saved; stopping", trial_log)
    print(f"preempted trial: {saved.group(0) if saved else 'resumed from the checkpoint of its last evaluation'}")
    # exactly as if never stopped: the same rows as an uninterrupted run of the same config
    config = metrics.parent / "config.yaml"
    reference = lab(cluster, root, "train", str(config), f"track.runs_dir={tmp_path / 'reference'}")
    assert reference.returncode == 0, reference.stderr
    assert rows(metrics) == rows(tmp_path / "reference" / study_name / "resnet-8-s0" / "metrics.jsonl")
    assert status(cluster, root, study_name)[0] == {"done": 1, "running": 0, "failed": 0, "waiting": 0}


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.postgres
def test_a_task_near_its_time_limit_requeues_itself_and_its_run_goes_on(cluster, study_name, tmp_path):
    root = write_project(tmp_path / "project", {"grid": {"train.seed": [0]}}, LONG, name=study_name)
    job = submit(cluster, root, study_name, tasks=1)
    task = f"{job}_0"
    metrics = root / "runs" / study_name / "resnet-8-s0" / "metrics.jsonl"
    wait_for("the trial past its first evaluation", lambda: metrics.is_file() and len(rows(metrics)) >= 1, cluster)
    # what SLURM sends SIGNAL_S before the time limit (--signal=B:USR1@120); no preemption: lab requeues the task
    cluster.run("scancel", "--batch", "--signal=USR1", task, check=True)
    wait_for("the task requeued", lambda: cluster.jobs().get(task, ("",))[0] == "PENDING", cluster, 60)
    cluster.release(task)
    wait_for("the point done", lambda: all_done(study_name, 1, cluster), cluster,
             480, root)  # a requeued task starts afresh on a busy machine: once seen to take over 240 s in CI
    log = (root / "runs" / study_name / "slurm" / f"{task}.out").read_text()
    assert f"SLURM job {task}: requeued\n" in log and "start 1" in log, log
    assert sorted(complete_points(study_name).values()) == [1]
    assert [r["iteration"] for r in rows(metrics)] == list(range(5, 201, 5))
    assert status(cluster, root, study_name)[0] == {"done": 1, "running": 0, "failed": 0, "waiting": 0}


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.postgres
def test_a_task_killed_mid_trial_has_its_trial_run_again_by_the_other(cluster, study_name, tmp_path):
    root = write_project(tmp_path / "project", {"grid": {"train.seed": [0, 1]}}, LONG, name=study_name)
    submit(cluster, root, study_name, tasks=2)
    runs = root / "runs" / study_name

    def both_past_a_checkpoint() -> bool:
        return all((runs / r / "metrics.jsonl").is_file() and len(rows(runs / r / "metrics.jsonl")) >= 1
                   for r in ("resnet-8-s0", "resnet-8-s1"))

    wait_for("both trials running", both_past_a_checkpoint, cluster)
    (victim,) = [t for t in trained(study_name) if t.user_attrs["run"] == "resnet-8-s0"]
    killed = victim.user_attrs["slurm_job"]
    # SIGKILL to the coordinator, no signal to act on, as at a node failure or OOM (plain `scancel -s KILL`
    # sends SIGTERM first, which hands the trial on at once)
    cluster.run("scancel", "--batch", "-s", "KILL", killed, check=True)
    wait_for("the task gone", lambda: killed not in cluster.jobs(), cluster, 60)
    counts, text = status(cluster, root, study_name)
    # its trial shows running (on the dead task, until a live one looks) or already taken over; never failed
    assert counts["failed"] == 0 and counts["done"] + counts["running"] + counts["waiting"] == 2, text
    wait_for("both points done", lambda: all_done(study_name, 2, cluster), cluster,
             root=root)

    assert sorted(complete_points(study_name).values()) == [1, 1]
    lost = [t for t in trained(study_name) if t.state == TrialState.FAIL]
    assert [t.number for t in lost] == [victim.number] and "lost" in lost[0].user_attrs["failure"]
    (again,) = [t for t in trained(study_name) if t.user_attrs.get("continues") == victim.number]
    assert again.state == TrialState.COMPLETE and again.user_attrs["slurm_job"] != killed
    assert not any("start 1" in log.read_text() for log in (runs / "slurm").glob("*.out"))  # no task requeued
    iterations = [r["iteration"] for r in rows(runs / "resnet-8-s0" / "metrics.jsonl")]
    assert iterations == list(range(5, 201, 5))  # resumed from its checkpoint: no gap, nothing twice
    assert status(cluster, root, study_name)[0] == {"done": 2, "running": 0, "failed": 0, "waiting": 0}


def test_bad_slurm_options_are_one_line_errors(tmp_path):
    root = write_project(tmp_path, GRID)
    env = {**os.environ, "WANDB_MODE": "offline"}
    for args, message in (
        (["--launcher", "slurm"], "--launcher slurm: give --storage with a database every node reaches"),
        (["--tasks", "2"], "--tasks: a SLURM option; add --launcher slurm"),
        (["--launcher", "slurm", "--storage", POSTGRES, "--tasks", "0"], "--tasks: 0 must be at least 1"),
        (["--launcher", "slurm", "--storage", POSTGRES, "--sbatch=qos"], "--sbatch: 'qos' is not an sbatch option"),
        (["--status"], "no study 'tiny' in runs/tiny/optuna.journal: start it with `lab sweep tiny`"),
    ):
        result = subprocess.run([sys.executable, "-m", "lab", "sweep", "tiny", *args], cwd=root, env=env,
                                capture_output=True, text=True)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], (args, result.stderr)
    assert not (root / "runs").exists()


@pytest.mark.parametrize("requeued", [True, False])
def test_a_requeue_whose_scontrol_is_stopped_with_the_task_says_what_slurm_did(requeued, tmp_path, monkeypatch, capsys):
    """`scontrol requeue` runs inside the task it requeues, and SLURM's SIGTERM to the task may reach it before it
    exits (CI saw "not requeued (-15)" for a task that was requeued): the job's restart count tells."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"""#!/bin/sh
count=$(cat {tmp_path}/restarts 2>/dev/null || echo 0)
if [ "$1" = show ]; then echo "JobId=7 ArrayJobId=7 ArrayTaskId=0 Requeue=1 Restarts=$count BatchFlag=1"; exit 0; fi
{"echo $((count + 1)) > " + str(tmp_path / "restarts") if requeued else ""}
kill -TERM $$
""")
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    slurm.requeue("7_0")
    expected = "requeued" if requeued else "not requeued (-15); run the same lab sweep --launcher slurm again"
    assert capsys.readouterr().out == f"[lab] SLURM job 7_0: {expected}\n"
