"""Load run records (``runs/STUDY/*/summary.json`` and ``metrics.jsonl``) into pandas, checking each one.

A run is finished exactly when its ``summary.json`` exists (``lab.records``); a run that failed (it diverged,
say) has a ``failure.json`` and no summary; any other run folder is still in progress. Every record read is
checked, and so is the study: each COMPLETE trial of its Optuna study must have left a finished run.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from lab.config import ConfigError, quote
from lab.health import run_warnings
from lab.nets.names import beyond_he_2015
from lab.records import BEST_VAL_ERR, ERRORS, RunRecord

NET_KEYS = ["arch", "depth", "shortcut"]  # one net of a study; its runs differ only by seed
COLUMNS = [
    "run", *NET_KEYS, "seed", "params", *ERRORS, "steps", "wall_s", BEST_VAL_ERR, "style",
    "dataset", "images_per_s", "code_version", "device_name", "torch", "finished", "warnings", "run_dir",
]


class RecordProblems(Exception):
    """Run records of a study that cannot be analysed as they are: one line per problem, each naming its file."""

    def __init__(self, study: str, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.study, self.problems = study, problems


@dataclass
class Study:
    """What ``read_study`` found: the finished runs, their curves, the failed runs and the problems."""

    runs: pd.DataFrame  # one row per finished run with a readable summary
    curves: pd.DataFrame  # one row per readable evaluation of those runs
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run, reason): failure.json and no summary
    pruned: list[tuple[str, str]] = field(default_factory=list)  # (run, where and why): pruned.json and no summary
    problems: list[str] = field(default_factory=list)  # "RUN: what is wrong with which file"
    # (run, what makes its net another than He 2015's): runs lab analyze does not compare yet (``unanalysed_families``)
    others: list[tuple[str, str]] = field(default_factory=list)


def _row(record: RunRecord, summary: dict) -> dict:
    hardware = summary.get("hardware")
    hardware = hardware if isinstance(hardware, dict) else {}
    # Records written before summaries carried their time: the summary is written last and once (lab.records).
    mtime = datetime.fromtimestamp(record.summary_path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    extra = {"device_name": hardware.get("device_name"), "torch": hardware.get("torch"),
             "finished": summary.get("finished", mtime),
             "warnings": "; ".join(map(str, summary["warnings"])) if isinstance(summary.get("warnings"), list) else None,
             "num_classes": summary.get("num_classes"), "run_dir": str(record.dir)}
    return {k: {**summary, **extra}.get(k) for k in [*COLUMNS, "num_classes"]}


def _classes(row: dict) -> int:
    """The run's number of classes: its summary's, or its dataset's (summaries from before lab.health)."""
    if isinstance(row.get("num_classes"), int):
        return row["num_classes"]
    from lab.data import TENSOR_SHAPES

    return TENSOR_SHAPES.get(row["dataset"], (0, 0, 0, 0))[3]  # 0: an ImageFolder, unknown here: not checked


def _history(record: RunRecord, run: str, problems: list[str]) -> list[dict]:
    """Every readable row of the run's metrics; a line that is not a row (torn by a crash, say) is a problem."""
    rows, found = record.metrics.history()
    problems += [f"{run}: {problem}" for problem in found]
    return [{"run": run, **row} for row in rows]


def _failure(record: RunRecord) -> str:
    return record.failure() or f"reason unknown: {record.failure_path} does not say"


def _pruning(record: RunRecord) -> str:
    """``by the median pruner at iteration 80, val_err 45.20``: where a sweep's pruner stopped the run, and why."""
    pruned = record.pruned()
    if pruned is None:
        return f"where unknown: {record.pruned_path} does not say"
    return f"by the {pruned['pruner']} pruner at iteration {pruned['iteration']:g}, {pruned['metric']} {pruned['value']:.2f}"


@dataclass
class Trial:
    number: int
    run: str  # its run folder's name
    point: str | None  # its grid point (JSON), None for a trial of a search
    lost: bool  # counted out of the study by `lab sweep`, which runs a new trial in its stead


def _complete_trials(runs_dir: Path, study: str, storage: str | None) -> list[Trial]:
    """Every COMPLETE trial of the study, from ``storage`` or ``runs_dir/STUDY/optuna.journal``; none when there
    is neither (run records copied without their study)."""
    journal = Path(runs_dir) / study / "optuna.journal"
    if storage is None and not journal.is_file():
        return []
    if storage is not None and "://" not in storage and not Path(storage).is_file():
        raise ConfigError(f"--storage: no journal file {storage}; give the file or URL that `lab sweep {shlex.quote(study)} --storage` took")
    if storage is not None and storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).is_file():
        raise ConfigError(f"--storage: no database file {storage[len('sqlite:///'):]}; give the URL that `lab sweep {shlex.quote(study)} --storage` took")
    import optuna
    from optuna.trial import TrialState

    from lab.sweep.storage import make_storage  # creates the journal's folder: only called for one that exists

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scheme, sep, rest = (storage or str(journal)).rpartition("://")
    where = scheme + sep + rest.rpartition("@")[2]  # a database URL without its user and password
    try:
        loaded = optuna.load_study(study_name=study, storage=make_storage(storage, journal.parent))
        complete = loaded.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    except KeyError:
        raise ConfigError(f"{where} holds no study {study!r}: pass the --storage that `lab sweep {shlex.quote(study)}` took") from None
    except ConfigError:
        raise
    except Exception as e:  # a database that does not answer, a journal that cannot be read
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"cannot read study {study!r} from {where}: {first}") from None
    lost = {str(k) for k in loaded.user_attrs.get("lost_records", {})}  # lab.sweep: complete trials whose record was lost
    return [
        Trial(t.number, t.user_attrs["run"], json.dumps(t.user_attrs["grid"], sort_keys=True)
              if isinstance(t.user_attrs.get("grid"), dict) and t.user_attrs["grid"] else None, str(t.number) in lost)
        for t in complete
        if isinstance(t.user_attrs.get("run"), str)
    ]


def read_study(runs_dir: Path, study: str, storage: str | None = None) -> Study:
    """Every run record of ``study``, checked; problems are collected, never raised (see ``load_runs``).

    ``storage``: the study's Optuna storage (a URL or journal file, as ``lab sweep --storage`` took);
    by default ``runs_dir/STUDY/optuna.journal`` when it exists. Without either, trials are not checked.
    """
    study_dir = Path(runs_dir) / study
    trials = _complete_trials(runs_dir, study, storage)
    problems, rows, history, unreadable, others, models = [], [], [], {}, [], {}
    for record in RunRecord.under(study_dir, "finished"):
        summary, problem = record.checked_summary()
        model = summary["config"].get("model") if not problem and isinstance(summary.get("config"), dict) else None
        beyond = beyond_he_2015(model) if isinstance(model, dict) else []  # records before the families: He 2015's
        if problem:
            unreadable[record.dir.name] = f"{record.dir.name}: {problem}"
        elif beyond:  # its net would be counted as He 2015's net of that arch, depth and shortcut
            others.append((record.dir.name, ", ".join(beyond)))
        else:
            rows.append(_row(record, summary))
            models[record.dir.name] = model
    problems += _same_net_other_model(models, rows)
    finished = {Path(row["run_dir"]).name for row in rows} | {run for run, _ in others}
    # A trial whose record was lost, then ran again as another trial (`lab sweep` does that), is no problem:
    # its grid point has a finished run, or (a search) the sweep counted it out of the study.
    ran = {t.point for t in trials if t.point is not None and t.run in finished}
    replaced = {t.run for t in trials if t.run not in finished and (t.point in ran if t.point is not None else t.lost)}
    problems += [problem for run, problem in unreadable.items() if run not in replaced]
    for row in rows:
        found = _history(RunRecord(row["run_dir"]), row["run"], problems)
        if row["warnings"] is None:  # a summary from before lab.health: its rows are checked here
            row["warnings"] = "; ".join(run_warnings(found, _classes(row)))
        history += found
    failed = RunRecord.under(study_dir, "failed")
    for t in trials:
        record = RunRecord(study_dir / t.run)
        if t.run in replaced or record.has_summary():  # an unreadable summary is named above
            continue
        if not record.dir.is_dir():
            problems.append(f"{t.run}: trial {t.number} finished but {record.dir} is missing")
        else:
            problems.append(f"{t.run}: trial {t.number} finished but {record.dir} has no {record.summary_path.name}")
    runs = pd.DataFrame(rows, columns=COLUMNS).sort_values([*NET_KEYS, "seed"], ignore_index=True)
    curves = pd.DataFrame(history, columns=list(dict.fromkeys(["run", "iteration", *(k for h in history for k in h)])))
    curves = curves.merge(runs[["run", *NET_KEYS, "seed", "dataset"]], on="run")
    curves["iteration"] = curves["iteration"].round().astype(int)  # logged as a float by Lightning
    named = {p.split(": ")[0] for p in problems}  # a complete trial whose run then failed is a problem, not a failure
    failed_runs = [(r.dir.name, _failure(r)) for r in failed if not r.has_summary() and r.dir.name not in named]
    pruned = [(r.dir.name, _pruning(r)) for r in RunRecord.under(study_dir, "pruned") if not r.has_summary()]
    return Study(runs, curves.sort_values(["run", "iteration"], ignore_index=True), failed_runs, pruned, problems, others)


def _same_net_other_model(models: dict[str, dict | None], rows: list[dict]) -> list[str]:
    """A run whose model section differs from another's of the same arch, depth and shortcut (a gate's bias, say):
    its seeds would be averaged with the other's as one net."""
    first: dict[tuple, tuple[str, dict]] = {}
    found = []
    for row in rows:
        run, model = Path(row["run_dir"]).name, models.get(Path(row["run_dir"]).name) or {}
        key = tuple(row[k] for k in NET_KEYS)
        seen, seen_model = first.setdefault(key, (run, model))
        differ = sorted(k for k in set(model) & set(seen_model) if model[k] != seen_model[k])  # a field both have
        if differ:
            found.append(f"{run}: model.{differ[0]} is {quote(model[differ[0]])}, {seen}'s (the same net to lab analyze) "
                         f"{quote(seen_model[differ[0]])}: analysed together their seeds would be averaged as one net's")
    return found


def unanalysed_families(others: list[tuple[str, str]]) -> str:
    """What ``lab analyze`` says of runs of nets beyond He 2015's, which it does not compare yet: preact-164 (or
    resnet-164-sd0.5) has resnet-164's arch, depth and shortcut, and would be averaged into it."""
    runs = ", ".join(f"{run} ({fields})" for run, fields in others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    return (f"{runs}: lab analyze compares He 2015's nets (model.family=resnet, without the stochastic depth, "
            f"zero-initialised residuals or ResNet-C/D of later papers) only so far, and would count these as theirs")


def no_runs(runs_dir: Path, study: str, failed: list[tuple[str, str]]) -> ConfigError:
    """Nothing to analyze: what to do about it, suggesting only what exists (a study folder, a sweep)."""
    from lab.sweep.spec import close_names, did_you_mean, known_sweeps

    study_dir = Path(runs_dir) / study
    also = f" ({len(failed)} failed: {', '.join(f'{r} ({why})' for r, why in failed[:3])}{', ...' if len(failed) > 3 else ''})" if failed else ""
    if study_dir.is_dir() or study in known_sweeps():
        return ConfigError(f"no finished runs under {study_dir}{also}: run `lab sweep {shlex.quote(study)}` first, or pass --runs-dir")
    studies = sorted(p.name for p in Path(runs_dir).glob("*/") if p.is_dir()) if Path(runs_dir).is_dir() else []
    where = f"the studies there: {', '.join(studies)}" if studies else "none there yet"
    hint = did_you_mean(study, studies)
    if not hint and (sweeps := close_names(study, known_sweeps())):  # a sweep of that name, not run here yet
        hint = f"; did you mean the sweep {sweeps[0]}? run `lab sweep {shlex.quote(sweeps[0])}` first"
    return ConfigError(f"no study {study!r} under {runs_dir}{hint} ({where}); start one with `lab sweep NAME`, "
                       f"or pass --runs-dir")


def load_runs(runs_dir: Path, study: str, storage: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per finished run, one row per evaluation of every run). Unfinished and failed runs are left out.

    ``runs`` carries ``run_dir`` (where the record lies, for checkpoints) and ``finished`` (UTC); in
    ``curves`` the ``iteration`` column is an integer. A record that cannot be read, or a complete trial
    without its run, raises ``RecordProblems`` naming each (``read_study`` returns what is there instead).
    """
    found = read_study(runs_dir, study, storage)
    if found.problems:
        raise RecordProblems(study, found.problems)
    if found.runs.empty:
        raise no_runs(runs_dir, study, found.failed)
    return found.runs, found.curves
