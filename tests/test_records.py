"""``lab.records`` owns the run record: it alone names a run's files, and ``RunRecord`` writes and reads them back."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab import records
from lab.config import make_config
from lab.records import FINAL_METRICS, SUMMARY_METRICS, RunRecord
from tests.conftest import TINY_RECIPE

ROOT = Path(__file__).resolve().parent.parent
FILE_NAMES = {  # the constant, and the file name it holds
    "CONFIG_FILE": "config.yaml", "METRICS_FILE": "metrics.jsonl", "SUMMARY_FILE": "summary.json",
    "WANDB_ID_FILE": "wandb-id", "FAILURE_FILE": "failure.json", "CHECKPOINT_FILE": "last.ckpt",
}
STILL_OUTSIDE: set[tuple[str, str]] = set()  # every module goes through lab.records


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of a module, its classes and functions (they may name files; code may not)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _uses(path: Path) -> set[str]:
    """The file-name constants a module refers to, and the file names its code (not its docstrings) spells out."""
    tree = ast.parse(path.read_text())
    docs, used = _docstrings(tree), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in FILE_NAMES:
            used.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in FILE_NAMES:
            used.add(node.attr)
        elif isinstance(node, ast.alias) and node.name in FILE_NAMES:
            used.add(node.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            used |= {name for name in FILE_NAMES.values() if name in node.value}
    return used


def test_only_lab_records_names_the_files_of_a_run():
    modules = sorted((ROOT / "lab").rglob("*.py")) + sorted((ROOT / "analysis").rglob("*.py"))
    owners = ROOT / "lab" / "records"
    assert owners / "run.py" in modules and ROOT / "lab" / "train" / "run.py" in modules
    found = {(str(p.relative_to(ROOT)), use) for p in modules if owners not in p.parents for use in _uses(p)}
    assert found - STILL_OUTSIDE == set(), "go through lab.records.RunRecord instead"


def test_the_ownership_check_sees_a_file_opened_by_name(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('"""Reads summary.json (a docstring may say so)."""\n'
                      "from lab.records import SUMMARY_FILE\n"
                      "def f(d):\n    return (d / 'metrics.jsonl').read_text(), records.FAILURE_FILE\n")
    assert _uses(module) == {"SUMMARY_FILE", "metrics.jsonl", "FAILURE_FILE"}


def test_the_metrics_are_named_once():
    from analysis.runs import COLUMNS
    from lab.sweep import spec
    from lab.train import run

    assert run.FINAL_METRICS is FINAL_METRICS  # what train() writes in the summary
    assert spec.METRICS is SUMMARY_METRICS == (*records.ERRORS, "best_val_err", *records.LOSSES)
    assert set(SUMMARY_METRICS) == {*FINAL_METRICS, "best_val_err"}
    assert {*records.ERRORS, "best_val_err"} <= set(COLUMNS)


def test_lab_records_imports_no_torch_lightning_or_wandb():
    code = "import sys, lab.records; print(sorted({'torch', 'pytorch_lightning', 'wandb'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"


def test_a_run_record_round_trips(tmp_path, capsys):
    config = make_config(TINY_RECIPE, {"track.runs_dir": str(tmp_path)})
    record = RunRecord(records.run_dir_for(config))
    record.folder.clear()  # makes the folder
    assert record.dir.is_dir() and list(record.dir.iterdir()) == []

    record.write_config(config)
    assert records.same_config(record.read_config(), config)

    run_id = record.new_wandb_id()
    assert len(run_id) == 12 and record.wandb_id() == run_id == RunRecord(record.dir).wandb_id()
    record.wandb_id_path.write_text("\n")  # lost: a new one, kept
    assert record.wandb_id() != run_id and record.wandb_id() == record.wandb_id_path.read_text()

    rows = [{"iteration": 5.0, "val_err": 50.0}, {"iteration": 10.0, "val_err": 40.0}]
    record.metrics.write_rows(rows[:1])
    record.metrics.append_row(rows[1])
    assert record.metrics.history() == (rows, [])
    assert record.metrics.rows_until(5, "run") == rows[:1] and record.metrics.rows_until(10, "run") == rows
    with open(record.metrics_path, "a") as f:
        f.write('{"iteration": 15.0, "val')  # torn by a crash, past the checkpoint of 10: dropped, with a note
    assert record.metrics.rows_until(10, "run") == rows
    assert capsys.readouterr().err == (f"lab: {record.metrics_path}: line 3 is unreadable (torn by a crash?); it comes "
                                       "after the checkpoint of iteration 10, so it is dropped and run resumes\n")
    assert record.metrics.history() == (rows, [f"{record.metrics_path} line 3 is not readable (Unterminated string starting at: "
                                       "column 21)"])
    assert record.metrics.rows_until(20, "run") is None  # a row before the checkpoint of 20 is lost: set aside
    assert not record.metrics_path.exists() and (record.dir / "metrics.jsonl.damaged").is_file()
    assert record.metrics.history() == ([], [f"{record.metrics_path} is missing"])

    assert record.summary_problem() == f"{record.summary_path} is missing" and not record.has_summary()
    summary = {"run": record.dir.name, "arch": "resnet", "depth": 8, "shortcut": "A", "seed": 0, "dataset": "digits",
               "params": 1000, **{k: 1.0 for k in FINAL_METRICS}, "best_val_err": 1.0, "steps": 10,
               "config": config.to_dict()}
    record.write_summary(summary)
    assert record.has_summary() and record.summary() == summary == record.finished(config)
    assert record.checked_summary() == (summary, None) and record.summary_problem() is None
    assert [r.dir for r in RunRecord.under(record.dir.parent, "finished")] == [record.dir]
    assert record.finished(make_config(TINY_RECIPE, {"track.runs_dir": str(tmp_path), "train.seed": 1})) is None
    record.summary_path.write_text("[1]")
    assert record.summary() is None and record.summary_problem() == f"{record.summary_path} is not a run summary"
    assert record.checked_summary() == (None, f"{record.summary_path} is not a summary (a JSON list, not an object)")
    said = record.set_aside_damaged_summary()
    assert said == f"{record.summary_path}: damaged (not a run summary); set aside as summary.json.damaged"

    assert record.failure() is None
    record.write_failure(record.dir.name, "diverged at iteration 7", 7, config)
    assert record.failure() == "diverged at iteration 7" == records.read_failure(record.dir)
    assert json.loads(record.failure_path.read_text())["config"] == config.to_dict()
    assert [r.dir for r in RunRecord.under(record.dir.parent, "failed")] == [record.dir]

    record.folder.clear()  # a fresh start keeps what was set aside
    assert sorted(p.name for p in record.dir.iterdir()) == ["metrics.jsonl.damaged", "summary.json.damaged"]
    assert RunRecord(tmp_path / "gone").summary_problem() == f"its run folder {tmp_path / 'gone'} is gone"


def test_a_checkpoint_step_is_read_whole(tmp_path):
    torch = pytest.importorskip("torch")
    record = RunRecord(tmp_path)
    state = {k: {} for k in records.CHECKPOINT_KEYS} | {"global_step": 20}
    records.write_atomic_with(record.checkpoint_path, lambda path: torch.save(state, path))
    assert record.checkpoint.step() == 20 and not list(tmp_path.glob("*.tmp"))
    torch.save({"global_step": 20}, record.checkpoint_path)
    with pytest.raises(ValueError, match="not a complete Lightning checkpoint"):
        record.checkpoint.step()


def test_a_record_file_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """The summary, a failure and the W&B id are written to a new file that is then renamed: a reader holding the
    old file keeps reading it whole while the new one is written, and a write that fails (a full disk) leaves the
    old file as it was and nothing beside it."""
    path = tmp_path / "summary.json"
    records.files.write_atomic(path, "old " * 4096)
    with path.open() as reader:
        records.files.write_atomic(path, "new")
        assert reader.read() == "old " * 4096  # rewritten in place, it would read "new" or a mix
    assert path.read_text() == "new"

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(records.files.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        records.files.write_atomic(path, "newer")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]
