"""A newcomer's first hour (issue 15): overrides that just work, a config to see before it runs, nothing
overwritten by accident."""
from __future__ import annotations

import json
import re

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


def test_a_shorter_run_needs_one_override_and_its_curves_end_at_max_steps(lab_here, tmp_path):
    """`optim.max_steps=N` alone: no eval_every to divide it, no milestones to move; the last row is at N."""
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({**TINY_RECIPE, "optim": {**TINY_RECIPE["optim"], "milestones": [0.8]}}))
    result = lab_here("train", "tiny.yaml", "optim.max_steps=12", "track.wandb=disabled", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "runs/adhoc/resnet-8-s0/metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows] == [5, 10, 12]  # eval_every 5, and the end
    assert rows[-1]["lr"] == pytest.approx(0.01)  # 0.8 of 12: lr / 10 from iteration 10
    summary = json.loads((tmp_path / "runs/adhoc/resnet-8-s0/summary.json").read_text())
    assert summary["steps"] == 12 and summary["test_err"] == rows[-1]["test_err"]


def test_train_print_config_shows_the_resolved_config_and_writes_nothing(lab_here, tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    result = lab_here("train", "tiny.yaml", "--print-config", "model.depth=14", "optim.milestones=[0.5]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# tiny.yaml model.depth=14 optim.milestones=[0.5]: run resnet-14-s0; "
                                    "lr x 0.1 at iterations [5]\n")
    printed = yaml.safe_load(result.stdout)
    assert make_config(printed).to_dict() == make_config(TINY_RECIPE, {"model.depth": 14, "optim.milestones": [0.5]}).to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]  # no runs/, nothing else


def test_sweep_print_config_shows_every_trial_and_writes_nothing(lab_here, tmp_path):
    root = write_project(tmp_path, {"grid": {"model.arch": ["plain", "resnet"], "train.seed": [0, 1]},
                                    "when": [{"match": {"model.arch": "plain"}, "set": {"optim.lr": 0.05}}]})
    result = lab_here("sweep", "tiny", "--print-config", "optim.max_steps=20", cwd=root)
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


def test_train_with_another_config_leaves_the_first_record_as_it_was(lab_here, tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    first = lab("train", "tiny.yaml", cwd=tmp_path)  # W&B offline: its files are part of the record
    assert first.returncode == 0, first.stderr
    run = tmp_path / "runs/adhoc/resnet-8-s0"
    before = _snapshot(run)
    assert any(p.parts[0] == "wandb" for p in before)
    again = lab_here("train", "tiny.yaml", "optim.lr=0.05", cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr == ("lab train: error: runs/adhoc/resnet-8-s0 holds a run of another config (optim.lr: 0.1 there, "
                            "0.05 here); to keep both, give this one another track.study=NAME or --name NAME; to replace "
                            "it, --overwrite\n")
    assert again.stdout == ""
    assert _snapshot(run) == before  # byte for byte
    same = lab_here("train", "tiny.yaml", cwd=tmp_path)  # the same config: its result, not trained again
    assert same.returncode == 0 and "after 10 iterations (already finished); record: runs/adhoc/resnet-8-s0" in same.stdout
    assert _snapshot(run) == before
    named = lab_here("train", "tiny.yaml", "optim.lr=0.05", "--name", "resnet-8-lr0.05", "track.wandb=disabled", cwd=tmp_path)
    assert named.returncode == 0, named.stderr
    assert "record: runs/adhoc/resnet-8-lr0.05" in named.stdout
    assert _snapshot(run) == before
    replaced = lab_here("train", "tiny.yaml", "optim.lr=0.05", "--overwrite", "track.wandb=disabled", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["lr"] == 0.05


@pytest.mark.parametrize("name", ["", "a/b", ".."])
def test_train_refuses_a_name_that_is_not_a_folder(lab_here, tmp_path, name):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    result = lab_here("train", "tiny.yaml", "--name", name, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith(f"lab train: error: --name: {name!r} is not a folder name")
    assert not (tmp_path / "runs").exists()


# --- CLI habits --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["train", "sweep", "analyze", "bench", "completion"])
def test_every_command_help_ends_with_real_examples(lab_here, tmp_path, command):
    result = lab_here(command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    examples = result.stdout.split("examples:\n")[1].splitlines()
    assert 2 <= len(examples) <= 3 and all(line.startswith(("  lab ", "  eval ")) for line in examples), result.stdout


def test_errors_show_the_commands_own_usage_and_name_only_what_is_missing(lab_here, tmp_path):
    bogus = lab_here("train", "x.yaml", "--bogus", cwd=tmp_path)
    assert bogus.returncode == 2 and bogus.stderr.startswith("usage: lab train ")
    assert bogus.stderr.endswith("lab train: error: unrecognized arguments: --bogus\n")
    missing = lab_here("sweep", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("usage: lab sweep ")
    assert missing.stderr.endswith("lab sweep: error: the following arguments are required: name\n")


def test_a_typo_suggests_only_names_that_exist(lab_here, tmp_path):
    sweep = lab_here("sweep", "depth-studi", cwd=tmp_path)
    assert sweep.returncode == 2
    assert "no sweeps/depth-studi.yaml; did you mean depth-study? (known: " in sweep.stderr
    analyze = lab_here("analyze", "depth-studi", cwd=tmp_path)  # no runs here: the sweep is what exists
    assert analyze.returncode == 2
    assert "no study 'depth-studi' under runs; did you mean the sweep depth-study? run `lab sweep depth-study` first" in analyze.stderr
    (tmp_path / "runs" / "adhoc").mkdir(parents=True)
    study = lab_here("analyze", "adhok", cwd=tmp_path)
    assert "no study 'adhok' under runs; did you mean adhoc? (the studies there: adhoc)" in study.stderr
    nothing = lab_here("analyze", "zzz", cwd=tmp_path)
    assert "did you mean" not in nothing.stderr and nothing.returncode == 2


def test_bash_completion_completes_commands_sweeps_studies_and_recipes(lab_here, tmp_path):
    import shutil
    import subprocess

    if shutil.which("bash") is None:
        pytest.skip("no bash here")
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "mine.yaml").write_text("recipe: digits\ngrid: {train.seed: [0]}\n")
    (tmp_path / "runs" / "adhoc").mkdir(parents=True)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    script = lab_here("completion", "bash", cwd=tmp_path)
    assert script.returncode == 0
    (tmp_path / "lab.bash").write_text(script.stdout)
    probe = 'source lab.bash; for words in "lab sw" "lab sweep dep" "lab sweep mi" "lab analyze ad" "lab train ti" ' \
            '"lab sweep --dr"; do COMP_WORDS=($words); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); COMPREPLY=(); _shtab_lab; ' \
            'echo "$words: ${COMPREPLY[*]}"; done'
    result = subprocess.run(["bash", "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.stdout.splitlines() == ["lab sw: sweep", "lab sweep dep: depth-study", "lab sweep mi: mine",
                                          "lab analyze ad: adhoc", "lab train ti: tiny.yaml", "lab sweep --dr: --dry-run"], \
        result.stdout + result.stderr
    assert "_lab_sweeps" in lab_here("completion", "zsh", cwd=tmp_path).stdout


def test_rerunning_a_finished_sweep_says_already_finished(lab_here, tmp_path):
    root = write_project(tmp_path, {"grid": {"train.seed": [0]}}, {**TINY_RECIPE, "track": {"wandb": "disabled"}})
    assert lab_here("sweep", "tiny", "--workers", "1", cwd=root).returncode == 0
    again = lab_here("sweep", "tiny", "--workers", "1", cwd=root)
    assert again.returncode == 0 and "[tiny] already finished: 1/1 done, 0 failed; records in runs/tiny" in again.stdout


def _interrupt_when(process, ready, timeout=120):
    """SIGINT to the command's process group, as Ctrl-C on its terminal sends it, once ``ready()``."""
    import os
    import signal
    import time

    deadline = time.monotonic() + timeout
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.poll() is None, "ended before it could be interrupted"
    os.killpg(process.pid, signal.SIGINT)
    return process.communicate(timeout=120)


LONG = {**TINY_RECIPE, "optim": {**TINY_RECIPE["optim"], "max_steps": 2000, "milestones": [0.75]}, "track": {"wandb": "disabled"}}


def _popen(root, *args):
    import os
    import subprocess
    import sys

    import signal

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Ctrl-C reaches a command on a terminal; a background job of a script (`.ci/run &`) inherits SIGINT ignored,
    # which Python keeps: the command here is the one on a terminal
    return subprocess.Popen([sys.executable, "-m", "lab", *args], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_an_interrupted_run_and_trial_say_interrupted_sigint(tmp_path):
    (tmp_path / "long.yaml").write_text(yaml.safe_dump(LONG))
    metrics = tmp_path / "runs" / "adhoc" / "resnet-8-s0" / "metrics.jsonl"
    train = _popen(tmp_path, "train", "long.yaml")
    _, err = _interrupt_when(train, lambda: metrics.is_file() and metrics.read_text().count("\n") >= 1)
    assert train.returncode == 130
    *progress, last = [line for line in err.splitlines() if line.strip()]
    assert last == "lab train: interrupted (SIGINT); the same command resumes runs/adhoc/resnet-8-s0 from its last checkpoint"
    assert all(line.startswith("resnet-8-s0: iteration ") for line in progress), err  # its progress lines before

    root = write_project(tmp_path / "project", {"grid": {"train.seed": [0]}}, LONG)
    log = root / "runs" / "tiny" / "logs" / "resnet-8-s0.log"
    run_metrics = root / "runs" / "tiny" / "resnet-8-s0" / "metrics.jsonl"
    sweep = _popen(root, "sweep", "tiny", "--workers", "1")
    out, err = _interrupt_when(sweep, lambda: run_metrics.is_file() and run_metrics.read_text().count("\n") >= 1)
    assert sweep.returncode == 130 and "lab sweep: interrupted" in err, out + err
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert "[lab sweep] resnet-8-s0: interrupted (SIGINT); its run resumes from its last checkpoint" in lines, lines
    assert not [line for line in lines if "exit code 1" in line], lines


# --- progress you can see ------------------------------------------------------------------------------------------

# long enough (a few seconds a trial) for a measured throughput before it ends
PROGRESS = {**LONG, "optim": {**LONG["optim"], "max_steps": 800}, "train": {**LONG["train"], "eval_every": 100}}


def test_a_piped_sweep_writes_eta_lines_while_its_trials_run_and_q_silences_them(lab_here, tmp_path):
    root = write_project(tmp_path, {"grid": {"train.seed": [0]}}, PROGRESS)
    result = lab_here("sweep", "tiny", "--workers", "1", cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    progress = [i for i, line in enumerate(lines) if line.startswith("[tiny] progress: ")]
    first_done = next(i for i, line in enumerate(lines) if " done in " in line)
    assert progress and progress[0] < first_done, result.stdout  # while the first trial runs
    assert re.search(r"resnet-8-s0 \d+/800 at \d+ images/s, ETA \d+:\d\d; study ETA \d+:\d\d$", lines[progress[0]])
    for run in ("resnet-8-s0",):  # the records hold results only
        assert "ETA" not in (root / "runs" / "tiny" / "logs" / f"{run}.log").read_text()
        assert "ETA" not in (root / "runs" / "tiny" / run / "metrics.jsonl").read_text()

    quiet = write_project(tmp_path / "quiet", {"grid": {"train.seed": [0]}}, PROGRESS)
    result = lab_here("-q", "sweep", "tiny", "--workers", "1", cwd=quiet)
    assert result.returncode == 0 and "ETA" not in result.stdout and "progress:" not in result.stdout
    (tmp_path / "long.yaml").write_text(yaml.safe_dump(LONG))
    trained = lab("train", "long.yaml", "-q", "optim.max_steps=20", cwd=tmp_path)
    assert trained.returncode == 0 and trained.stderr == "", trained.stderr


def test_on_a_terminal_lab_train_shows_a_progress_bar_and_a_sweep_a_live_table(tmp_path):
    import shutil
    import subprocess
    import sys

    if shutil.which("script") is None:
        pytest.skip("no script(1) here to give lab a pseudo-terminal")
    (tmp_path / "long.yaml").write_text(yaml.safe_dump(LONG))
    command = f"stty cols 120 rows 40; {sys.executable} -m lab train long.yaml optim.max_steps=300"
    shown = subprocess.run(["script", "-qc", command, "/dev/null"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    screen = shown.stdout.replace("\r", "\n")
    assert re.search(r"resnet-8-s0: +\d+%\|.*\| \d+/300 \[", screen), screen[-2000:]
    assert "300/300" in screen and "after 300 iterations" in screen
    assert "iteration 100/300" not in screen  # the bar, not the lines of a log

    root = write_project(tmp_path / "project", {"grid": {"train.seed": [0]}}, PROGRESS)
    command = f"stty cols 120 rows 40; {sys.executable} -m lab sweep tiny --workers 1"
    shown = subprocess.run(["script", "-qc", command, "/dev/null"], cwd=root, capture_output=True, text=True, timeout=300)
    screen = shown.stdout.replace("\r", "\n")
    assert re.search(r"tiny: study ETA \d+:\d\d", screen), screen[-2000:]  # the live table's title
    assert re.search(r"resnet-8-s0 +\d+/800 +\d+ +\d+:\d\d", screen), screen[-2000:]  # a row of it
    assert "[tiny] progress:" not in screen and "1/1 done" in screen


def test_dry_run_estimates_the_wall_time_before_anything_runs(lab_here, tmp_path):
    root = write_project(tmp_path, {"grid": {"train.seed": [0, 1]}})
    result = lab_here("sweep", "tiny", "--dry-run", "--workers", "2", cwd=root)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\[tiny\] estimated: about \d+:\d\d of training with 2 workers \(\d+ threads? each; ", result.stdout, re.M)
    assert not (root / "runs").exists()


def test_a_record_of_the_same_run_is_the_same_however_its_milestones_and_tracking_are_written(lab_here, tmp_path):
    """Milestones as iterations (records before fractions) and as fractions of max_steps are one run; so are two
    W&B modes of one run: neither is refused as another config, nor trained again."""
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({**TINY_RECIPE, "track": {"wandb": "disabled"}}))  # milestones [8]
    assert lab_here("train", "tiny.yaml", cwd=tmp_path).returncode == 0
    for override in ("optim.milestones=[0.8]", "track.wandb=offline"):
        again = lab_here("train", "tiny.yaml", override, cwd=tmp_path)
        assert again.returncode == 0 and "(already finished)" in again.stdout, again.stderr


def test_a_run_is_not_trained_into_a_folder_that_is_not_a_run(lab_here, tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    (tmp_path / "runs" / "adhoc" / "analysis").mkdir(parents=True)
    (tmp_path / "runs" / "adhoc" / "analysis" / "README.md").write_text("a report\n")
    result = lab_here("train", "tiny.yaml", "--name", "analysis", cwd=tmp_path)
    assert result.returncode == 2
    assert "runs/adhoc/analysis is there and is not a run folder (none of a run record's files)" in result.stderr
    assert (tmp_path / "runs" / "adhoc" / "analysis" / "README.md").read_text() == "a report\n"
