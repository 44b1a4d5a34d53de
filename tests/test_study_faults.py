"""Faults a study meets over days: a torn journal line, a full disk, a database outage, run records lost
after their trial finished. Each test damages the real thing (the file, the filesystem, the PostgreSQL
server), checks what the user sees, and that running the same command again completes the study with
every grid point exactly once and every finished result kept."""
import json
import re
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import POSTGRES, write_project
from tests.outage import DatabaseLink

SEEDS = {"grid": {"train.seed": [0, 1, 2]}}


def load_study(name: str, storage: str | Path) -> optuna.Study:
    from lab.sweep.storage import make_storage

    url = str(storage)
    return optuna.load_study(study_name=name, storage=make_storage(url, Path(url).parent))


def done_points(study: optuna.Study) -> Counter:
    """How many times each grid point is complete, leaving out trials whose run record was lost."""
    lost = {int(k) for k in study.user_attrs.get("lost_records", {})}
    return Counter(
        json.dumps(t.user_attrs["grid"], sort_keys=True)
        for t in study.get_trials(states=(TrialState.COMPLETE,))
        if t.number not in lost
    )


def finished(runs: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in runs.glob("*/summary.json")}


def one_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stdout, result.stdout + result.stderr
    return lines[0]


def journal_lines(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), "a journal always ends with a whole line"
    return [json.loads(line) for line in data.splitlines()]


@pytest.mark.slow
def test_a_torn_journal_line_is_set_aside_and_the_study_completes(lab_here, tmp_path):
    root = write_project(tmp_path, SEEDS)
    assert lab_here("sweep", "tiny", "--workers", "1", cwd=root).returncode == 0
    runs, journal = root / "runs" / "tiny", root / "runs" / "tiny" / "optuna.journal"
    before = finished(runs)
    os.truncate(journal, journal.stat().st_size - 100)  # a crash in the middle of the last append
    whole, torn = journal.read_bytes().rsplit(b"\n", 1)
    torn_line = whole.count(b"\n") + 2

    first = lab_here("sweep", "tiny", "--workers", "1", cwd=root)
    assert first.returncode == 0, first.stderr
    assert f"line {torn_line} was cut off mid-write" in first.stderr
    assert (runs / "optuna.journal.torn").read_bytes() == torn + b"\n"  # kept for inspection
    journal_lines(journal)
    second = lab_here("sweep", "tiny", "--workers", "1", cwd=root)
    assert second.returncode == 0 and "3/3 done" in second.stdout and "0 points queued" in second.stdout, second.stderr
    assert sorted(done_points(load_study("tiny", journal)).values()) == [1, 1, 1]
    assert finished(runs) == before  # no finished run was trained again


def test_a_damaged_journal_line_is_named_and_nothing_runs(lab_here, tmp_path):
    """A journal broken before appends were made all-or-nothing: refused with the file and line, not a traceback."""
    from lab.sweep.storage import make_storage

    root = write_project(tmp_path, SEEDS)
    journal = root / "runs" / "tiny" / "optuna.journal"
    study = optuna.create_study(study_name="tiny", storage=make_storage(None, journal.parent))
    study.set_user_attr("note", "x")
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(lines[0] + b'{"op_code": 5, "study_id": 0, "user_attr{"op_code"\n' + b"".join(lines[1:]))
    result = lab_here("sweep", "tiny", cwd=root)
    assert result.returncode == 2
    assert f"{journal.relative_to(root)}: line 2 is damaged" in one_line(result) and "move it aside" in result.stderr
    assert not (journal.parent / "logs").exists()


def test_a_failed_append_leaves_no_partial_line(tmp_path, monkeypatch):
    """The write that fails (ENOSPC, a file-size limit) is cut back off: the journal stays readable."""
    from lab.sweep.storage import make_storage

    storage = make_storage(None, tmp_path)
    study = optuna.create_study(study_name="s", storage=storage)
    size = (tmp_path / "optuna.journal").stat().st_size
    real_write = os.write

    def short_write(fd, data):  # half the bytes reach the file, then the disk is full
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", short_write)
    with pytest.raises(OSError):
        study.set_user_attr("big", "x" * 1000)
    monkeypatch.undo()
    assert (tmp_path / "optuna.journal").stat().st_size == size
    study.set_user_attr("after", 1)
    assert load_study("s", tmp_path / "optuna.journal").user_attrs == {"after": 1}


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs: room for about one tiny run's record (a checkpoint is written beside the last one)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"a tmpfs is needed to fill a disk for real (as root): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)])


@pytest.mark.slow
def test_a_full_disk_stops_the_sweep_in_one_line_and_a_rerun_completes(lab_here, tmp_path, small_disk):
    root = write_project(tmp_path, SEEDS)
    sweep = ("sweep", "tiny", "--runs-dir", str(small_disk), "--workers", "1")
    for attempt in range(2):  # the disk stays full: the same line again, and nothing torn
        result = lab_here(*sweep, cwd=root)
        assert result.returncode == 1, result.stdout + result.stderr
        line = one_line(result)
        assert line.startswith("lab sweep: stopped: the disk is full") and "finished results are safe" in line, line
        assert line.endswith(f"resume with: lab sweep tiny --runs-dir {small_disk} --workers 1")
        assert not list(small_disk.rglob("*.tmp"))
        journal_lines(small_disk / "tiny" / "optuna.journal")
    kept = finished(small_disk / "tiny")
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    result = lab_here(*sweep, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(done_points(load_study("tiny", small_disk / "tiny" / "optuna.journal")).values()) == [1, 1, 1]
    assert {k: v for k, v in finished(small_disk / "tiny").items() if k in kept} == kept


@pytest.fixture
def postgres_study():
    """A study name, and the link its sweep reaches the database through (``cut`` for an outage)."""
    name = f"tiny-{uuid.uuid4().hex[:8]}"
    link = DatabaseLink(POSTGRES)
    yield name, link
    link.close()
    optuna.delete_study(study_name=name, storage=optuna.storages.RDBStorage(POSTGRES))


def _sweep_until_started(root: Path, name: str, storage: str, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "lab", "sweep", name, "--storage", storage, "--workers", "1"],
                            cwd=root, env={**os.environ, "WANDB_MODE": "offline", **env}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in proc.stdout:
        if "started" in line:
            return proc
    pytest.fail(f"the sweep ended before a trial started: {proc.stderr.read()}")


LONG = {"optim": {"lr": 0.1, "batch_size": 32, "max_steps": 40, "milestones": [30]}}  # a few seconds a trial
TWO = {"grid": {"train.seed": [0, 1]}}


@pytest.mark.slow
@pytest.mark.postgres
def test_a_database_outage_during_a_trial_is_waited_out(tmp_path, postgres_study):
    from tests.conftest import TINY_RECIPE

    name, link = postgres_study
    root = write_project(tmp_path, TWO, {**TINY_RECIPE, **LONG}, name=name)
    proc = _sweep_until_started(root, name, link.url, {})
    link.cut()  # down across the trial's end: its result is told to the study after the restart
    time.sleep(17)
    link.mend()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err
    study = optuna.load_study(study_name=name, storage=POSTGRES)
    assert sorted(done_points(study).values()) == [1, 1]
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.FAIL))


@pytest.mark.slow
@pytest.mark.postgres
def test_a_long_database_outage_ends_the_sweep_in_one_line_and_a_rerun_completes(lab_here, tmp_path, postgres_study):
    from tests.conftest import TINY_RECIPE

    name, link = postgres_study
    root = write_project(tmp_path, TWO, {**TINY_RECIPE, **LONG}, name=name)
    proc = _sweep_until_started(root, name, link.url, {"LAB_STORAGE_RETRY_S": "3"})
    link.cut()
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        link.mend()
    assert proc.returncode == 1, out + err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"lab sweep: stopped: the study's database {link.url} did not answer for 3s"), line
    assert f"resume with: lab sweep {name} --storage {link.url} --workers 1" in line
    again = lab_here("sweep", name, "--storage", link.url, "--workers", "1", cwd=root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(done_points(optuna.load_study(study_name=name, storage=POSTGRES)).values()) == [1, 1]


@pytest.mark.slow
def test_lost_and_damaged_run_records_run_their_points_again(lab_here, tmp_path):
    root = write_project(tmp_path, SEEDS)
    assert lab_here("sweep", "tiny", "--workers", "1", cwd=root).returncode == 0
    runs = root / "runs" / "tiny"
    kept = (runs / "resnet-8-s2" / "summary.json").read_text()
    shutil.rmtree(runs / "resnet-8-s0")
    (runs / "resnet-8-s1" / "summary.json").write_text("garbage\n")

    result = lab_here("sweep", "tiny", "--workers", "1", cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"its run folder {runs.resolve() / 'resnet-8-s0'} is gone: its point runs again" in result.stdout
    assert "resnet-8-s1/summary.json is not readable" in result.stdout
    assert "2 points queued" in result.stdout and "3/3 done" in result.stdout
    study = load_study("tiny", runs / "optuna.journal")
    assert sorted(done_points(study).values()) == [1, 1, 1]
    assert len(study.user_attrs["lost_records"]) == 2
    assert (runs / "resnet-8-s2" / "summary.json").read_text() == kept
    assert set(finished(runs)) == {"resnet-8-s0", "resnet-8-s1", "resnet-8-s2"}
    again = lab_here("sweep", "tiny", "--workers", "1", cwd=root)
    assert "0 points queued" in again.stdout and "3/3 done" in again.stdout, again.stdout


@pytest.mark.slow
def test_a_diverged_run_fails_its_trial_by_name_and_the_fixed_sweep_completes(lab_here, tmp_path):
    root = write_project(tmp_path, {"grid": {"train.seed": [0, 1]}})
    result = lab_here("sweep", "tiny", "--workers", "1", "optim.lr=1e30", cwd=root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"\| resnet-8-s0 FAILED: diverged at iteration \d+; its log: ", result.stdout), result.stdout
    assert "0/2 done, 0 running, 2 failed" in result.stdout
    study = load_study("tiny", root / "runs" / "tiny" / "optuna.journal")
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 2 and all(re.fullmatch(r"diverged at iteration \d+", t.user_attrs["failure"]) for t in failed)
    assert not study.get_trials(states=(TrialState.COMPLETE,))

    fixed = lab_here("sweep", "tiny", "--workers", "1", cwd=root)  # lr back to the recipe's: nothing finished with 1e30
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert sorted(done_points(load_study("tiny", root / "runs" / "tiny" / "optuna.journal")).values()) == [1, 1]
    assert not list((root / "runs" / "tiny").glob("*/failure.json"))


SIGNALLED = """
import os, signal, sys
import pytorch_lightning as pl
from lab.config import make_config
from lab.records import RunRecord, run_dir_for
from lab.sweep.protocol import EXIT_CHECKPOINTED
from lab.train.callbacks import CheckpointOnSignal
from lab.train import train

config = make_config({recipe!r})
at = int(sys.argv[1])

class SignalAt(pl.Callback):  # SLURM's USR1 arriving during the training step of iteration `at`
    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step + 1 == at:
            os.kill(os.getpid(), signal.SIGUSR1)

checkpoint = RunRecord(run_dir_for(config, config.run_name)).checkpoint_path
train(config, callbacks=(SignalAt(), CheckpointOnSignal(checkpoint, config.train.eval_every, EXIT_CHECKPOINTED)))
"""


@pytest.mark.parametrize("at", [7, 10])  # between two evaluations; in the step an evaluation follows
def test_a_trial_signalled_mid_interval_or_at_an_evaluation_resumes_as_if_never_stopped(tmp_path, at):
    from lab.config import make_config
    from lab.sweep import EXIT_CHECKPOINTED
    from lab.train import train
    from tests.conftest import TINY_RECIPE

    def config(folder):
        return make_config(TINY_RECIPE, {"track.runs_dir": str(tmp_path / folder), "track.wandb": "disabled",
                                         "optim.max_steps": 20, "optim.milestones": [15]})

    def trial(folder, signal_at):  # as a SLURM task's trial process runs, the resumed attempt too
        return subprocess.run([sys.executable, "-c", SIGNALLED.format(recipe=config(folder).to_dict()), str(signal_at)],
                              capture_output=True, text=True, timeout=300)

    signalled = trial("signalled", at)
    assert signalled.returncode == EXIT_CHECKPOINTED, signalled.stdout + signalled.stderr
    assert f"checkpoint of iteration {at} saved" in signalled.stdout
    assert trial("signalled", 0).returncode == 0
    train(config("straight"))
    rows = {f: (tmp_path / f / "adhoc" / "resnet-8-s0" / "metrics.jsonl").read_text() for f in ("signalled", "straight")}
    assert rows["signalled"] == rows["straight"]  # every evaluation once, the same numbers
