"""Whole sweeps through the ``lab`` command: Optuna, one process per trial, W&B offline, analysis."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from tests.conftest import TINY_RECIPE, lab, write_project

GRID = {"grid": {"model.arch": ["plain", "resnet"], "train.seed": [0, 1]}}
POINTS = 4
POSTGRES = os.environ.get("LAB_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def journal_study(root: Path, name: str = "tiny") -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(root / "runs" / name / "optuna.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def completed_points(study: optuna.Study) -> Counter:
    return Counter(
        json.dumps(t.user_attrs["grid"], sort_keys=True) for t in study.get_trials(states=(TrialState.COMPLETE,))
    )


def summaries(runs: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/summary.json")}


def dashboard_importances(journal: Path) -> dict[str, float]:
    """The parameter importances optuna-dashboard's importance view shows for the study in ``journal``."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "optuna-dashboard"), str(journal), "--host",
                               "127.0.0.1", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/0/param_importances") as response:
                    body = json.load(response)
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "optuna-dashboard did not start"
                time.sleep(0.5)
    finally:
        server.terminate()
        server.wait()
    assert "param_importances" in body, body  # {"reason": "Failed to calculate parameter importances."} otherwise
    (importances,) = body["param_importances"]  # one objective
    return {p["name"]: p["importance"] for p in importances}


def test_a_second_sweep_in_one_process_runs_its_trials_in_its_own_environment(tmp_path, lab_here, monkeypatch):
    """``lab.cli.main`` called twice in one process (a script, a notebook): the second sweep's trials are forked from
    the server the first one started, with the first one's environment unless they take their coordinator's."""
    recipe = {**TINY_RECIPE, "track": {"wandb": "disabled"}}
    first, second = (write_project(tmp_path / name, {"grid": {"train.seed": [0]}}, recipe) for name in ("first", "second"))
    assert lab_here("-q", "sweep", "tiny", "--workers", "1", cwd=first).returncode == 0
    monkeypatch.setenv("LAB_VERBOSE", "1")  # the second coordinator's environment: its trials log what libraries say
    result = lab_here("-q", "sweep", "tiny", "--workers", "1", cwd=second)
    assert result.returncode == 0 and (second / "runs" / "tiny" / "resnet-8-s0" / "summary.json").is_file(), result.stderr
    assert "GPU available" in (second / "runs" / "tiny" / "logs" / "resnet-8-s0.log").read_text()  # Lightning's, shown
    assert (first / "runs" / "tiny" / "logs" / "resnet-8-s0.log").read_text() == ""  # -q and not verbose: nothing


@pytest.mark.slow
def test_tiny_sweep_end_to_end_then_resume_runs_nothing_twice(lab_here, tmp_path):
    root = write_project(tmp_path, GRID)
    result = lab("sweep", "tiny", "--workers", "2", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "4 points queued, 2 workers" in result.stdout
    assert "[tiny] 4/4 done, 0 running, 0 failed, 0 remaining" in result.stdout
    assert "next: lab analyze tiny" in result.stdout

    study = journal_study(root)
    assert completed_points(study) == Counter({k: 1 for k in completed_points(study)}) and len(completed_points(study)) == POINTS
    runs = root / "runs" / "tiny"
    done = summaries(runs)
    assert sorted(done) == ["plain-8-s0", "plain-8-s1", "resnet-8-s0", "resnet-8-s1"]
    for name in done:  # each trial is its own W&B run, grouped by study, named like the paper
        (wandb_file,) = (runs / name / "wandb").glob("offline-run-*/run-*.wandb")
        assert name in wandb_file.read_bytes().decode("latin1") and b"tiny" in wandb_file.read_bytes()
    best = study.best_trial
    assert best.value == json.loads((runs / best.user_attrs["run"] / "summary.json").read_text())["val_err"]
    # Optuna sees what the study varies: parameters, as Optuna's dataframe, plots and importances read them
    frame = study.trials_dataframe()
    assert {"params_model.arch", "params_train.seed", "user_attrs_n_params"} <= set(frame.columns)
    assert "user_attrs_params" not in frame.columns  # the parameter count has its own name
    for t in study.trials:
        assert t.params == t.user_attrs["grid"]
        assert t.distributions["model.arch"].choices == ("plain", "resnet")
    assert set(optuna.importance.get_param_importances(study)) == {"model.arch", "train.seed"}
    assert set(dashboard_importances(runs / "optuna.journal")) == {"model.arch", "train.seed"}

    again = lab_here("sweep", "tiny", "--workers", "2", cwd=root)
    assert again.returncode == 0, again.stderr
    assert "0 points queued" in again.stdout and "started" not in again.stdout
    assert summaries(runs) == done and len(journal_study(root).trials) == POINTS

    out = root / "report"
    analyzed = lab_here("analyze", "tiny", "--out", str(out), cwd=root)
    assert analyzed.returncode == 0, analyzed.stderr
    table = pd.read_csv(out / "summary.csv")
    required = ["run", "arch", "depth", "shortcut", "seed", "params", "train_err", "val_err", "test_err", "steps", "wall_s"]
    assert list(table.columns[: len(required)]) == required
    assert len(table) == POINTS and set(table["steps"]) == {10} and table["test_err"].between(0, 100).all()
    means = pd.read_csv(out / "means.csv")
    assert set(zip(means["arch"], means["seeds"])) == {("plain", 2), ("resnet", 2)}
    for stem in ("degradation", "error_vs_depth", "layer_responses"):  # one- and two-column widths
        for width in ("1col", "2col"):
            assert (out / f"{stem}-{width}.pdf").read_bytes().startswith(b"%PDF")
            assert (out / f"{stem}-{width}.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_killed_sweep_is_recovered_and_finished_points_are_kept(lab_here, tmp_path):
    recipe = {**TINY_RECIPE, "optim": {**TINY_RECIPE["optim"], "max_steps": 150, "milestones": [100]}}
    root = write_project(tmp_path, GRID, recipe)
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.Popen([sys.executable, "-m", "lab", "sweep", "tiny", "--workers", "1"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    runs = root / "runs" / "tiny"
    deadline = time.time() + 300
    while not summaries(runs) or len(list((runs / "logs").glob("*.log"))) < 2:  # one done, the next one started
        assert time.time() < deadline and proc.poll() is None, proc.stdout.read() if proc.poll() is not None else "timeout"
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(signal.SIGKILL)  # the whole worker dies mid-trial, without cleaning up
    proc.wait()
    finished = summaries(runs)
    assert len(finished) == 1
    stuck = [t for t in journal_study(root).trials if t.state == TrialState.RUNNING]
    assert len(stuck) == 1

    result = lab_here("sweep", "tiny", "--workers", "1", cwd=root)
    assert result.returncode == 0, result.stderr
    study = journal_study(root)
    lost = study.trials[stuck[0].number]
    assert lost.state == TrialState.FAIL and "lost" in lost.user_attrs["failure"]
    assert sorted(completed_points(study).values()) == [1] * POINTS
    after = summaries(runs)
    assert len(after) == POINTS and all(after[name] == stamp for name, stamp in finished.items())
    killed = runs / lost.user_attrs["run"]
    iterations = [json.loads(line)["iteration"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert iterations == list(range(5, 151, 5))  # resumed from its last checkpoint: no gap, nothing twice
    assert "[tiny] 4/4 done" in result.stdout


@pytest.mark.slow
def test_points_enqueued_twice_still_run_once(lab_here, tmp_path):
    """Two machines starting one study at once both enqueue the grid; every point must still run once."""
    root = write_project(tmp_path, GRID)
    (root / "runs" / "tiny").mkdir(parents=True)
    storage = JournalStorage(JournalFileBackend(str(root / "runs" / "tiny" / "optuna.journal")))
    study = optuna.create_study(study_name="tiny", storage=storage)
    points = [{"model.arch": a, "train.seed": s} for s in (0, 1) for a in ("plain", "resnet")]
    for point in points + points[::-1]:  # as lab enqueues a point: its values are the trial's parameters
        study.enqueue_trial(point, user_attrs={"grid": point})
    result = lab_here("sweep", "tiny", "--workers", "2", cwd=root)
    assert result.returncode == 0, result.stderr
    study = journal_study(root)
    assert sorted(completed_points(study).values()) == [1] * POINTS
    assert sum(t.state == TrialState.PRUNED for t in study.trials) == POINTS
    assert sum("worker" in t.user_attrs for t in study.trials) == POINTS  # trainings started


@pytest.mark.slow
@pytest.mark.postgres
def test_two_machines_share_one_postgres_study(tmp_path):
    """Two coordinators (as on two machines, each with its own runs folder) on one PostgreSQL study."""
    name = f"tiny-{uuid.uuid4().hex[:8]}"
    try:
        storage = optuna.storages.RDBStorage(POSTGRES)
    except Exception as e:
        pytest.fail(f"PostgreSQL at {POSTGRES} is needed for the distributed sweep test: {e}")
    root = write_project(tmp_path, {**GRID, "grid": {**GRID["grid"], "train.seed": [0, 1, 2]}}, name=name)
    env = {**os.environ, "WANDB_MODE": "offline"}
    procs = [
        subprocess.Popen([sys.executable, "-m", "lab", "sweep", name, "--storage", POSTGRES, "--workers", "1",
                          "--runs-dir", f"machine{i}"], cwd=root, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=600)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        study = optuna.load_study(study_name=name, storage=storage)
        assert sorted(completed_points(study).values()) == [1] * 6
        assert sum("worker" in t.user_attrs for t in study.trials) == 6  # no point was trained twice
        per_machine = [len(summaries(root / f"machine{i}" / name)) for i in range(2)]
        assert sum(per_machine) == 6 and min(per_machine) >= 1, per_machine  # both machines did work
    finally:
        optuna.delete_study(study_name=name, storage=storage)


@pytest.mark.slow
def test_tpe_search_samples_hyperparameters(lab_here, tmp_path):
    sweep = {"search": {"optim.lr": {"low": 0.01, "high": 0.3, "log": True}}, "n_trials": 2}
    root = write_project(tmp_path, sweep)
    result = lab_here("sweep", "tiny", "--workers", "1", cwd=root)
    assert result.returncode == 0, result.stderr
    trials = journal_study(root).get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2
    for t in trials:
        summary = json.loads((root / "runs" / "tiny" / t.user_attrs["run"] / "summary.json").read_text())
        assert t.user_attrs["run"] == f"resnet-8-s0-t{t.number}"
        assert summary["config"]["optim"]["lr"] == t.params["optim.lr"] and 0.01 <= t.params["optim.lr"] <= 0.3


@pytest.mark.parametrize(
    "sweep_text,message",
    [
        ("recipe: tiny\ngrid: {model.depth: [8, 9]\n", "tiny.yaml: not valid YAML"),
        ("recipe: tiny\ngrids: {model.depth: [8]}\n", "grids: unknown key"),
        ("recipe: tiny\ngrid: {model.depth: [8, 9]}\n", "model.depth: depth 9 is not 6n+2"),
        ("recipe: tiny\ngrid: {model.widht: [8]}\n", "model.widht: unknown key"),
        ("recipe: tiny\ngrid: {model.depth: 8}\n", "grid.model.depth: expected list, got int 8"),
        ("recipe: tiny\n", "nothing varies"),
        ("recipe: tiny\ngrid: {model.depth: [8, 14, 8]}\n", "grid.model.depth: 8 is listed twice; list each value once"),
        ("recipe: nope\ngrid: {model.depth: [8]}\n", "nope.yaml: no such file"),
        ("recipe: tiny\nmetric: accuracy\ngrid: {model.depth: [8]}\n", "metric: 'accuracy' is not one of"),
        ("recipe: tiny\nsearch: {optim.lr: {low: 0.1}}\nn_trials: 2\n", "search.optim.lr: expected {low"),
        ("recipe: tiny\ngrid: {model.depth: [8]}\nexclude: [{model.arch: plain}]\n", "exclude[0]: expected a mapping of grid keys (model.depth)"),
        ("recipe: tiny\ngrid: {model.depth: [8]}\nexclude: [{model.depth: 8}]\n", "exclude: leaves no grid point to run"),
        ("recipe: tiny\ngrid: {model.depth: [8]}\nwhen: [{match: {model.depth: 8}}]\n", "when[0]: expected {match:"),
        ("recipe: tiny\ngrid: {model.depth: [8]}\nwhen: [{match: {model.depth: 8}, set: {model.depth: 14}}]\n", "setting no grid key"),
        ("recipe: tiny\ngrid: {model.depth: [8, 14]}\nwhen: [{match: {model.depth: 14}, set: {optim.milestones: [99]}}]\n",
         "optim.milestones: [99] go past optim.max_steps=10"),
        ("recipe: tiny\ngrid: {model.arch: [plain, resnet]}\nexclude: [{model.arch: Plain}]\n",
         "exclude[0].model.arch: ['Plain'] not among the grid's values ['plain', 'resnet']"),
        ("recipe: tiny\ngrid: {model.depth: [8, 14]}\nwhen: [{match: {model.depth: '14'}, set: {optim.lr: 0.01}}]\n",
         "when[0].match.model.depth: ['14'] not among the grid's values [8, 14]"),
        ("recipe: tiny\ngrid: {model.depth: [8, 14]}\nexclude: [{model.depth: 14}]\nwhen: [{match: {model.depth: 14}, set: {optim.nope: 1}}]\n",
         "optim.nope: unknown key"),
        ("recipe: tiny\ngrid: {model.depth: [8]}\nwhen: [{match: {model.depth: 8}, set: {track.study: x}}]\n",
         "when[0].set: track.* says where records go"),
        ("recipe: tiny\ngrid: {model.arch: [plain, resnet], model.shortcut: [A, B]}\n",
         "are the same run 'plain-8-s0' (a plain net has no shortcut); leave one out with exclude"),
    ],
)
def test_malformed_sweeps_are_rejected_before_anything_runs(tmp_path, lab_here, sweep_text, message):
    root = write_project(tmp_path, GRID)
    (root / "sweeps" / "tiny.yaml").write_text(sweep_text)
    result = lab_here("sweep", "tiny", cwd=root)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (root / "runs").exists()


def test_unknown_sweep_and_bad_storage_are_one_line_errors(tmp_path, lab_here):
    root = write_project(tmp_path, GRID)
    unknown = lab_here("sweep", "nosuch", cwd=root)
    assert unknown.returncode == 2 and "no sweeps/nosuch.yaml (known: " in unknown.stderr
    bad = lab_here("sweep", "tiny", "--storage", "postgresql://nobody@127.0.0.1:1/none", cwd=root)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--storage: cannot open" in bad.stderr
    assert not (root / "runs").exists()  # a command refused before training leaves nothing behind
    none = lab_here("analyze", "tiny", cwd=root)
    assert none.returncode == 2 and "no finished runs under runs/tiny" in none.stderr


def test_a_study_refuses_a_changed_recipe(tmp_path, monkeypatch):
    from lab.config import ConfigError
    from lab.sweep import Sweep, load_sweep

    root = write_project(tmp_path, GRID)
    monkeypatch.chdir(root)
    name, spec, recipe = load_sweep("tiny")
    changed = {**recipe, "optim": {**recipe["optim"], "lr": 0.05}}
    Sweep(name, spec, changed)  # nothing finished yet (say, every trial diverged): new fixed settings are taken
    study = Sweep(name, spec, recipe).study  # the study starts, remembering what does not vary
    study.tell(study.ask(), 1.0)  # a trial finished with them
    Sweep(name, spec, recipe, overrides={"track.wandb": "disabled"})  # tracking may differ
    with pytest.raises(ConfigError, match=r"'tiny' was started with other settings \(optim.lr differ\)"):
        Sweep(name, spec, changed)
    older = Sweep(name, spec, recipe).study  # a study started before lab had model.style and data.scale
    stored = older.user_attrs["base_config"]
    del stored["model"]["style"], stored["data"]["scale"]
    older.set_user_attr("base_config", stored)
    Sweep(name, spec, recipe)  # their defaults are what that study ran with
    more_seeds = load_sweep("tiny")[1]
    more_seeds.grid["train.seed"] = [0, 1, 2]  # growing the grid is fine
    Sweep(name, more_seeds, recipe)


def test_exclude_and_per_point_settings(tmp_path, monkeypatch):
    """Grids that are not full products, and settings that come with a grid value (ResNet-110's warm-up)."""
    from lab.sweep import load_sweep, planned_trials

    sweep = {
        "grid": {"model.arch": ["plain", "resnet"], "model.depth": [8, 14], "model.shortcut": ["A", "B"]},
        "exclude": [{"model.arch": "plain", "model.shortcut": ["B"]}, {"model.arch": "plain", "model.depth": 14}],
        "when": [
            {"match": {"model.depth": 14}, "set": {"optim.warmup_lr": 0.01, "optim.warmup_steps": 4}},
            {"match": {"model.depth": 14, "model.shortcut": "B"}, "set": {"optim.warmup_steps": 2}},
        ],
    }
    monkeypatch.chdir(write_project(tmp_path, sweep))
    _, spec, recipe = load_sweep("tiny")
    trials = dict(planned_trials(spec, recipe, {}))
    assert sorted(trials) == ["plain-8-s0", "resnet-14-B-s0", "resnet-14-s0", "resnet-8-B-s0", "resnet-8-s0"]
    warmups = {name: (c.optim.warmup_lr, c.optim.warmup_steps) for name, c in trials.items()}
    assert warmups == {"plain-8-s0": (None, 0), "resnet-8-s0": (None, 0), "resnet-8-B-s0": (None, 0),
                       "resnet-14-s0": (0.01, 4), "resnet-14-B-s0": (0.01, 2)}


def test_a_study_refuses_changed_per_point_settings_but_takes_rules_for_new_points(tmp_path, monkeypatch):
    from lab.config import ConfigError
    from lab.sweep import Sweep, load_sweep

    sweep = {"grid": {"model.depth": [8, 14]}, "when": [{"match": {"model.depth": 14}, "set": {"optim.lr": 0.05}}]}
    monkeypatch.chdir(write_project(tmp_path, sweep))
    name, spec, recipe = load_sweep("tiny")
    first = Sweep(name, spec, recipe)
    first.queue()
    first.study.tell(first.study.ask(), 1.0)  # one point finished (depth 14: deepest first)
    Sweep(name, spec, recipe)  # the same spec again: resumes
    with pytest.raises(ConfigError, match=r"other settings \(optim.lr differ\)"):  # what the depth-8 points run with
        Sweep(name, spec, recipe, overrides={"optim.lr": 0.5})
    spec.when[0]["set"]["optim.lr"] = 0.2
    with pytest.raises(ConfigError, match=r"ran \{'model.depth': 14\} with other per-point settings"):
        Sweep(name, spec, recipe)
    spec.when[0]["set"]["optim.lr"] = 0.05
    spec.grid["model.depth"].append(20)  # a new point that brings a rule of its own (ResNet-110's warm-up, say)
    spec.when.append({"match": {"model.depth": 20}, "set": {"optim.warmup_lr": 0.01, "optim.warmup_steps": 2}})
    Sweep(name, spec, recipe)


def test_command_line_overrides_reach_every_trial_also_where_a_rule_sets_the_key(tmp_path, monkeypatch):
    from lab.sweep import load_sweep, planned_trials

    sweep = {"grid": {"model.depth": [8, 14]}, "when": [{"match": {"model.depth": 14}, "set": {"optim.lr": 0.05}}]}
    monkeypatch.chdir(write_project(tmp_path, sweep))
    _, spec, recipe = load_sweep("tiny")
    assert [c.optim.lr for _, c in planned_trials(spec, recipe, {})] == [TINY_RECIPE["optim"]["lr"], 0.05]
    assert [c.optim.lr for _, c in planned_trials(spec, recipe, {"optim.lr": 0.3})] == [0.3, 0.3]


def test_dry_run_lists_table_6_nets_and_writes_nothing(tmp_path, lab_here):
    result = lab_here("sweep", "cifar10-depth-study", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.startswith("  ") and "-s" in line}
    assert len(rows) == 27 and not any(name.startswith("plain-110") for name in rows)
    from lab.reference import CIFAR10_PARAMS

    for depth in (20, 32, 44, 56, 110):
        assert rows[f"resnet-{depth}-s0"][1] == f"{CIFAR10_PARAMS[depth]:,}"
    assert rows["resnet-20-s0"][2:4] == ["40.55", "M"]  # about 41 M multiply-adds per 32x32 image
    assert "total: 27 trials, 9 distinct nets" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_dry_run_of_the_imagenet_ablation_shows_table_3_nets(lab_here, tmp_path):
    from lab.reference import IMAGENET_PARAMS_34

    result = lab_here("sweep", "imagenet-shortcut-ablation", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.startswith("  ") and "-s" in line}
    assert sorted(rows) == sorted(["plain-18-s0", "plain-34-s0", "resnet-18-s0", "resnet-18-B-s0", "resnet-18-C-s0",
                                   "resnet-34-s0", "resnet-34-B-s0", "resnet-34-C-s0"])
    for shortcut, name in (("A", "resnet-34-s0"), ("B", "resnet-34-B-s0"), ("C", "resnet-34-C-s0")):
        assert rows[name][1] == f"{IMAGENET_PARAMS_34[shortcut]:,}" and rows[name][4] == "224x224"
    assert rows["resnet-34-s0"][2:4] == ["3.64", "G"]  # Table 1: 3.6 G FLOPs
    assert not (tmp_path / "runs").exists()


def test_a_grown_grid_runs_just_its_new_points_with_their_parameters(lab_here, tmp_path):
    """Another seed and another arch, added to a study that ran: the new points run, each trial's parameters are its
    grid point (numbers an int range that widens, names a categorical over every value the field takes)."""
    recipe = {**TINY_RECIPE, "track": {"wandb": "disabled"}}
    root = write_project(tmp_path, {"grid": {"train.seed": [0], "model.arch": ["resnet"]}}, recipe)
    assert lab_here("sweep", "tiny", "-q", cwd=root).returncode == 0
    write_project(tmp_path, {"grid": {"train.seed": [0, 1], "model.arch": ["resnet", "plain"]}}, recipe)
    grown = lab_here("sweep", "tiny", "-q", cwd=root)
    assert grown.returncode == 0 and "finished in" in grown.stdout and "4/4 done, 0 failed" in grown.stdout, grown.stderr
    study = optuna.load_study(study_name="tiny", storage=JournalStorage(JournalFileBackend(
        str(root / "runs" / "tiny" / "optuna.journal"))))
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(study.trials) == len(trials) == 4
    assert sorted((t.params["train.seed"], t.params["model.arch"]) for t in trials) == [
        (0, "plain"), (0, "resnet"), (1, "plain"), (1, "resnet")]
    assert all(t.params == t.user_attrs["grid"] for t in trials)
    assert trials[-1].distributions["model.arch"].choices == ("plain", "resnet")
