"""The ``lab`` command: ``train``, ``sweep`` and ``analyze``.

Bad input exits with status 2 and one line naming what is wrong and how to fix it.

A command prints its own lines only: the warnings and log lines of the libraries underneath (Lightning, torch,
W&B, Optuna, pandas, matplotlib, ...) are about their internals, not about the user's runs, and are hidden
unless ``-v``/``--verbose`` (or ``LAB_VERBOSE=1``) asks for them. ``lab --version`` imports no torch: it answers
at once.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

VERBOSE_ENV = "LAB_VERBOSE"  # "1": everything the libraries say; trial processes of a sweep inherit it


class _Version(argparse.Action):
    """``--version``: print :func:`version` and exit (``main`` answers it before the parser is even built)."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        parser.exit(message=version() + "\n")


def _parser() -> argparse.ArgumentParser:
    from lab.config import WANDB_MODES  # imports torch (lab.nets): not for --version

    verbose_help = ("also show the warnings and log lines of Lightning, torch, W&B, Optuna and the other libraries "
                    f"(hidden by default; {VERBOSE_ENV}=1 does the same, also for a sweep's trial logs)")
    raw = argparse.RawDescriptionHelpFormatter  # the examples keep their lines
    p = argparse.ArgumentParser(prog="lab", description="Depth studies of plain and residual networks.", formatter_class=raw,
                                epilog=_examples("lab sweep depth-study && lab analyze depth-study",
                                                 "lab train experiments/digits.yaml model.arch=plain model.depth=56",
                                                 "lab sweep depth-study --status"))
    p.add_argument("--version", action=_Version, help="print lab's version and git commit, and exit")
    quiet_help = "no progress display or lines (a sweep's trials, lab train's bar); results and errors still print"
    p.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    p.add_argument("-q", "--quiet", action="store_true", help=quiet_help)
    # -v and -q are taken after the command too; SUPPRESS: absent there, they leave the value given before the command
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=quiet_help)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", parents=[common], help="train one run from a recipe in experiments/", formatter_class=raw,
                       epilog=_examples("lab train experiments/digits.yaml model.arch=plain model.depth=56 train.seed=1",
                                        "lab train experiments/digits.yaml optim.max_steps=80 --print-config",
                                        "lab train experiments/cifar10.yaml data.data_dir=data train.device=cuda"))
    t.add_argument("config", help="a recipe, e.g. experiments/digits.yaml").complete = RECIPE_COMPLETION
    t.add_argument("overrides", nargs="*", default=[], help="SECTION.FIELD=VALUE, e.g. model.arch=plain model.depth=56")
    t.add_argument("--name", help="the run's folder under runs/STUDY/ (default: named like the paper, e.g. resnet-56-s0)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace a record of another config in the run's folder (refused without it)")
    t.add_argument("--print-config", action="store_true", help="print the resolved config as YAML; train nothing, write nothing")

    s = sub.add_parser("sweep", parents=[common], help="run (or resume) the Optuna study of sweeps/NAME.yaml", formatter_class=raw,
                       epilog=_examples("lab sweep depth-study", "lab sweep depth-study --dry-run optim.max_steps=80",
                                        "lab sweep digits-lr --storage postgresql://user@db-host/lab --launcher slurm --tasks 4"))
    s.add_argument("name", help="a sweep in sweeps/, e.g. depth-study").complete = SWEEP_COMPLETION
    s.add_argument("--storage", default=os.environ.get("LAB_STORAGE") or None,
                   help="Optuna storage: a database URL such as postgresql://user@host/db to share the study between "
                   "machines, or a journal file path (default: $LAB_STORAGE, else runs/NAME/optuna.journal); keep a "
                   "password out of it: ~/.pgpass, or LAB_STORAGE in the environment")
    s.add_argument("--workers", type=int, default=None,
                   help="parallel trial processes here (default: one per CPU core up to 8 without a GPU; with GPUs, "
                   "up to 4 small nets per GPU: lab/sweep/packing.py)")
    s.add_argument("--stall-timeout", type=float, metavar="SECONDS",
                   help="kill a trial that makes no progress (no training or evaluation batch) for this long, and resume "
                   "its run from its checkpoint in a new trial (default: 10x its longest pause so far, at least 300 s; "
                   "900 s before its first iteration)")
    s.add_argument("--runs-dir", help="folder for run records (default: the recipe's track.runs_dir, runs/)")
    s.add_argument("--wandb", choices=WANDB_MODES, help="W&B mode for every trial (default: the recipe's, auto)")
    s.add_argument("--dry-run", action="store_true",
                   help="list every trial (run name, parameters, multiply-adds per image), the total and an estimate of "
                   "the wall time (a few training steps of each net timed here); run no trial, write nothing")
    s.add_argument("--print-config", action="store_true",
                   help="print what every trial would run as YAML (the shared config, each trial's own values); write nothing")
    s.add_argument("--status", action="store_true", help="the study at a glance, from its storage (any machine): "
                   "points done, running (host, SLURM job), failed (why), waiting, and its SLURM jobs still queued")
    s.add_argument("--launcher", choices=("local", "slurm"), default="local",
                   help="local: run the trials here (default); slurm: submit --tasks coordinators as a SLURM array job")
    cluster = s.add_argument_group("with --launcher slurm (each task runs --workers trials at a time: trials per GPU)")
    cluster.add_argument("--tasks", type=int, help="SLURM tasks, each a coordinator of the study (default: 1)")
    cluster.add_argument("--partition", help="SLURM partition (default: the cluster's)")
    cluster.add_argument("--gpus-per-task", type=int, help="GPUs of each task (default: none)")
    cluster.add_argument("--cpus-per-task", type=int, help="CPU cores of each task (default: the cluster's)")
    cluster.add_argument("--time", help="time limit of each task, e.g. 4:00:00; a task near it requeues itself")
    cluster.add_argument("--sbatch", action="append", metavar="OPTION", help="an extra #SBATCH line, e.g. "
                         "--sbatch=--qos=high (repeatable)")
    s.add_argument("--task", action="store_true", help=argparse.SUPPRESS)  # inside a SLURM job: one coordinator
    s.add_argument("overrides", nargs="*", default=[], help="SECTION.FIELD=VALUE applied to every trial")

    a = sub.add_parser("analyze", parents=[common], help="tables and figures of a study's run records", formatter_class=raw,
                       epilog=_examples("lab analyze depth-study", "lab analyze depth-study --runs-dir /scratch/runs --out paper/",
                                        "lab analyze adhoc  # the runs of lab train"))
    a.add_argument("name", help="the study (sweep) name, e.g. depth-study").complete = STUDY_COMPLETION
    a.add_argument("--runs-dir", default="runs", help="folder of run records (default: runs)")
    a.add_argument("--out", help="output folder (default: runs/NAME/analysis)")
    a.add_argument("--storage", default=os.environ.get("LAB_STORAGE") or None,
                   help="the study's Optuna storage, as `lab sweep --storage` took it, to check that every finished "
                   "trial left its run (default: $LAB_STORAGE, else runs/NAME/optuna.journal when it exists)")
    a.add_argument("--responses-axis", choices=("auto", "log", "linear"), default="auto",
                   help="Figure 7's std axis: log, linear, or auto (log when the responses span more than 10x; default)")
    a.add_argument("--partial", action="store_true",
                   help="analyze the runs that are there when records are missing or unreadable; README.md lists "
                   "what was left out")

    b = sub.add_parser("bench", parents=[common], help="training throughput: lab's path vs a DataLoader loop vs the floor",
                       formatter_class=raw, epilog=_examples("lab bench --quick", "lab bench --first-study",
                                                             "lab bench --gpu-check --out runs/gpu.json"))
    mode = b.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a tiny net and a few iterations (seconds; for CI)")
    mode.add_argument("--gpu-check", action="store_true",
                      help="the GPU protocol: ResNet-20/56/110 with bf16 and compiled variants, under 5 minutes on an H200")
    mode.add_argument("--first-study", action="store_true",
                      help="time `lab sweep depth-study` as a new user runs it (budget: 5 minutes) and check the paper's "
                      "result on every seed (out: runs/first-study.json unless --out)")
    b.add_argument("--out", help="the JSON report; the table goes beside it as .md "
                   "(default: runs/bench.json; with --first-study runs/first-study.json)")
    b.add_argument("--workers", type=int, help="with --first-study: the sweep's --workers (default: the sweep's own)")
    b.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda if available)")
    b.add_argument("--no-sweep", action="store_true", help="leave out the sweep probe (trials/hour, 1 vs N workers)")
    b.add_argument("--depths", help="comma-separated ResNet depths to measure instead of the mode's, e.g. 20,56")

    c = sub.add_parser("completion", help="print a shell completion script (subcommands, options, sweep names, recipes)",
                       formatter_class=raw, epilog=_examples('eval "$(lab completion bash)"  # in ~/.bashrc',
                                                             'lab completion zsh > "${fpath[1]}/_lab"'))
    c.add_argument("shell", choices=("bash", "zsh"))
    p._lab_commands = dict(sub.choices)  # each command's own parser: its usage for its errors (_parse)
    return p


def _examples(*lines: str) -> str:
    return "examples:\n" + "".join(f"  {line}\n" for line in lines)


# What `lab completion` completes beyond subcommands and options (shtab): recipes, the sweeps here and lab's own,
# and the studies under runs/.
_SWEEP_DIRS = '"./sweeps" "' + str(Path(__file__).resolve().parent.parent / "sweeps") + '"'
COMPLETION_PREAMBLE = {
    "bash": f"""
_lab_sweeps() {{ local d f; for d in {_SWEEP_DIRS}; do for f in "$d"/*.yaml; do [ -e "$f" ] && basename "$f" .yaml; done; done | sort -u | grep -- "^$1"; }}
_lab_studies() {{ local d; for d in runs/*/; do [ -d "$d" ] && basename "$d"; done | grep -- "^$1"; }}
_lab_recipes() {{ compgen -d -- "$1"; compgen -f -X '!*.y*ml' -- "$1"; }}
""",
    "zsh": f"""
_lab_sweeps() {{ local -a names; local d; for d in {_SWEEP_DIRS}; do names+=($d/*.yaml(N:t:r)); done; _describe 'sweep' names; }}
_lab_studies() {{ local -a names; names=(runs/*(N/:t)); _describe 'study' names; }}
""",
}
SWEEP_COMPLETION = {"bash": "_lab_sweeps", "zsh": "_lab_sweeps"}
STUDY_COMPLETION = {"bash": "_lab_studies", "zsh": "_lab_studies"}
RECIPE_COMPLETION = {"bash": "_lab_recipes", "zsh": "_files -g '*.y(a|)ml'"}


def _overrides(items: list[str]) -> dict:
    from lab.config import parse_override

    return dict(parse_override(item) for item in items)


def _default_workers(spec, recipe, overrides: dict) -> int:
    """Trials at once here: the sweep's smallest net packed onto every GPU, or one per core (``lab.sweep.packing``)."""
    from lab.sweep import packing
    from lab.sweep import planned_trials

    configs = [config for _, config in planned_trials(spec, recipe, overrides)]
    return packing.default_workers(configs, packing.visible_gpus())


def cmd_train(args: argparse.Namespace) -> int:
    from lab.config import ConfigError, load_config, name_problem

    config = load_config(args.config, _overrides(args.overrides))  # before the heavy imports: errors come fast
    if args.name is not None and name_problem(args.name):
        raise ConfigError(f"--name: {name_problem(args.name)} (e.g. --name resnet-56-lr0.05)")
    if args.print_config:
        from lab.config import config_yaml

        print(f"# {args.config}" + "".join(f" {o}" for o in args.overrides) + f": run {args.name or config.run_name}"
              + (f"; lr x {config.optim.gamma:g} at iterations {config.optim.milestone_steps}" if config.optim.milestones else ""))
        print(config_yaml(config.to_dict()), end="")
        return 0
    from lab.records import RunFailed, RunRecord, run_dir_for
    from lab.train import EXIT_INTERRUPTED, interrupt_note, train

    run_dir = run_dir_for(config, args.name)
    already = RunRecord(run_dir).finished(config) is not None
    interrupted = interrupt_note(f"lab train: interrupted (SIGINT); the same command resumes {run_dir} from its last "
                                 "checkpoint", sys.stderr)
    progress: tuple = ()
    if not args.quiet and not already:  # Lightning's bar on a terminal, else a line per evaluation (lab.progress)
        from lab.progress import EvaluationLines, progress_bar

        name = args.name or config.run_name
        progress = (progress_bar(name),) if sys.stderr.isatty() else (EvaluationLines(name, config.optim.batch_size),)
    try:
        summary = train(config, args.name, callbacks=progress, overwrite=args.overwrite)
    except RunFailed as e:  # the run's own result (it diverged): one line, not a traceback
        print(f"lab train: {e}; record: {e.run_dir}", file=sys.stderr)
        return 1
    except BaseException:
        if interrupted:  # Lightning turns Ctrl-C into exit(1): said above, and the shell's status for it
            return EXIT_INTERRUPTED
        raise
    print(
        f"{summary['run']}: train_err {summary['train_err']:.2f}%, val_err {summary['val_err']:.2f}%, "
        f"test_err {summary['test_err']:.2f}% after {summary['steps']} iterations "
        f"({'already finished' if already else format(summary['wall_s'], '.0f') + 's'}); record: {run_dir}"
    )
    for warning in summary.get("warnings", []):  # still a result, but not one to trust without a look (lab.health)
        print(f"lab train: {summary['run']} WARNING: {warning}", file=sys.stderr)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from lab.config import ConfigError
    from lab.sweep import Sweep, SweepStopped, load_sweep

    name, spec, recipe = load_sweep(args.name)
    overrides = _overrides(args.overrides)
    if args.runs_dir:
        overrides["track.runs_dir"] = args.runs_dir
    if args.wandb:
        overrides["track.wandb"] = args.wandb
    if args.print_config:
        from lab.sweep.spec import resolved_yaml

        print(resolved_yaml(name, spec, recipe, {**overrides, "track.study": name}), end="")
        return 0
    if args.dry_run:
        from lab.sweep import dry_run

        workers = args.workers if args.workers is not None else _default_workers(spec, recipe, overrides)
        dry_run(name, spec, recipe, overrides, workers=workers)
        return 0
    if args.status:
        from lab.sweep import print_status

        print_status(name, spec, recipe, args.storage, overrides)
        return 0
    slurm_given = [f"--{k.replace('_', '-')}" for k in ("tasks", "partition", "gpus_per_task", "cpus_per_task", "time", "sbatch")
                   if getattr(args, k) is not None]
    if args.launcher == "local" and slurm_given:
        raise ConfigError(f"{slurm_given[0]}: a SLURM option; add --launcher slurm to submit the sweep to SLURM")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers: {args.workers} must be at least 1")
    if args.stall_timeout is not None and not args.stall_timeout > 0:
        raise ConfigError(f"--stall-timeout: {args.stall_timeout:g} must be a positive number of seconds")
    if args.launcher == "slurm" and not args.task:
        return _submit_to_slurm(args, name, spec, recipe, overrides)
    workers = args.workers if args.workers is not None else _default_workers(spec, recipe, overrides)
    slurm_job = None
    if args.task:
        from lab.sweep.slurm import job_id

        slurm_job = job_id() or "none"
    start = time.perf_counter()
    sweep = Sweep(name, spec, recipe, storage=args.storage, workers=workers, overrides=overrides, slurm_job=slurm_job,
                  stall_timeout=args.stall_timeout)
    try:
        counts = sweep.run()
    except SweepStopped as e:  # the database or the disk failed: one line, and how to go on
        print(f"lab sweep: stopped: {e}; resume with: {_resume_command(args)}", file=sys.stderr)
        return 1
    if sweep.released == "SIGUSR1":  # preempted, or near the time limit: trials handed on; back into the queue
        from lab.sweep.slurm import requeue

        requeue(slurm_job)
        return 0
    if sweep.released:  # SIGTERM alone: cancelled (scancel); its trials were handed on to the other tasks
        print(f"[{name}] SLURM job {slurm_job} stopped by {sweep.released}; its trials were handed on")
        return 0
    nothing_left = not sweep.started and counts["running"] == counts["remaining"] == 0
    took = "already finished" if nothing_left else f"finished in {time.perf_counter() - start:.0f}s"
    if counts["running"]:  # held by another coordinator (or one that died: reaped once its heartbeat is stale)
        took = f"nothing more to run here after {time.perf_counter() - start:.0f}s"
    status = shlex.join(["lab", "sweep", name, "--status", *(["--runs-dir", args.runs_dir] if args.runs_dir else [])])
    print(
        f"[{name}] {took}: {counts['done']}/{spec.total} done, "
        + (f"{counts['pruned']} pruned, " if counts["pruned"] else "")
        + f"{counts['failed']} failed"
        + (f", {counts['running']} running in another coordinator ({status} shows where; the same command takes it "
           f"over if that one has died)" if counts["running"] else "")
        + f"; records in {sweep.study_dir}; next: "
        + shlex.join(["lab", "analyze", name, *(["--runs-dir", args.runs_dir] if args.runs_dir else [])])
    )
    if any(sweep.study_dir.glob("*/wandb/offline-run-*")):
        print(f"[{name}] W&B runs were written offline; upload them with: wandb sync "
              f"{shlex.quote(str(sweep.study_dir))}/*/wandb/offline-run-*")
    if counts["failed"]:
        print(f"[{name}] run the same command again to retry the failed trials", file=sys.stderr)
        return 1
    return 0


def _submit_to_slurm(args: argparse.Namespace, name: str, spec, recipe: dict, overrides: dict) -> int:
    """``--launcher slurm``: queue the study's points here (errors come now, not in a job), then submit the tasks."""
    from lab.sweep.slurm import SlurmOptions, check_storage, submit
    from lab.sweep.storage import PASSWORD_HINT, has_password, shown
    from lab.sweep import Sweep

    storage = check_storage(args.storage)
    options = SlurmOptions(tasks=1 if args.tasks is None else args.tasks, partition=args.partition, gpus_per_task=args.gpus_per_task,
                           cpus_per_task=args.cpus_per_task, time=args.time, sbatch=args.sbatch or [])
    options.check()
    sweep = Sweep(name, spec, recipe, storage=storage, workers=1, overrides=overrides)
    added = sweep.queue()
    runs_dir = sweep.study_dir.parent.resolve()
    secret = has_password(storage)  # then the URL reaches the tasks in a file only they read (lab.sweep.slurm.submit)
    task = [sys.executable, "-m", "lab", "sweep", args.name, *([] if secret else ["--storage", storage]),
            "--runs-dir", str(runs_dir), "--task"]
    task += ["--workers", str(args.workers)] if args.workers is not None else []
    task += ["--wandb", args.wandb] if args.wandb else []
    task += ["--stall-timeout", str(args.stall_timeout)] if args.stall_timeout is not None else []
    task += [item for item in args.overrides if not item.startswith("track.runs_dir=")]
    job = submit(sweep, task, options, storage if secret else None)
    counts = sweep.counts()
    print(f"[{name}] submitted SLURM job {job}: {options.tasks} task{'s' if options.tasks != 1 else ''} for "
          f"{counts['remaining'] + counts['running']} of {spec.total} points ({added} newly queued); records in {sweep.study_dir}; "
          f"logs in {sweep.study_dir / 'slurm'}; follow it with: "
          + shlex.join(["lab", "sweep", args.name, "--status", "--storage", shown(storage),
                        *(["--runs-dir", args.runs_dir] if args.runs_dir else [])])
          + (f" ({PASSWORD_HINT})" if secret else ""))
    return 0


def _resume_command(args: argparse.Namespace) -> str:
    """The ``lab sweep`` command line that carries on where this one stopped (a storage's password as ``***``)."""
    from lab.sweep.storage import PASSWORD_HINT, has_password, shown

    words = ["lab", "sweep", args.name]
    for option in ("storage", "runs_dir", "wandb", "workers"):
        if getattr(args, option) is not None:
            words += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    words = [shown(w) for w in words]
    return shlex.join(words + args.overrides) + (f" ({PASSWORD_HINT})" if has_password(args.storage) else "")


def cmd_bench(args: argparse.Namespace) -> int:
    from lab.bench import run_bench, run_first_study

    if args.first_study:
        out = Path(args.out or "runs/first-study.json")
        report = run_first_study(out, workers=args.workers)
        print(f"written: {out} and {out.with_suffix('.md')} ({report['wall_s']:.0f}s)")
        ok = all(r["resnet_trains"] and r["plain_degrades"] for r in report["seeds"]) and report["of_budget"] < 1
        return 0 if ok else 1
    args.out = args.out or "runs/bench.json"
    mode = "quick" if args.quick else "gpu-check" if args.gpu_check else "full"
    depths = tuple(int(d) for d in args.depths.split(",")) if args.depths else None
    report = run_bench(mode, Path(args.out), device=args.device, sweep=not args.no_sweep, depths=depths)
    print(f"written: {args.out} and {Path(args.out).with_suffix('.md')} ({report['elapsed_s']:.0f}s)")
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    print(shtab.complete(_parser(), shell=args.shell, preamble=COMPLETION_PREAMBLE))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from analysis.report import write_report
    from analysis.runs import RecordProblems
    from lab.config import check_name
    from lab.records import check_folder

    check_name(args.name, "the study's name")
    out = Path(args.out) if args.out else Path(args.runs_dir) / args.name / "analysis"
    if not args.out:  # the study's own folders: not written through a link (an --out of the user's own may be one)
        for folder, what in ((out.parent, "study folder"), (out, "study's analysis folder")):
            check_folder(folder, what, fix="give --out FOLDER", link_fix="give --out FOLDER to write the analysis there")
    try:
        log_y = {"auto": None, "log": True, "linear": False}[args.responses_axis]
        written = write_report(Path(args.runs_dir), args.name, out, storage=args.storage, partial=args.partial,
                               responses_log_y=log_y)
    except RecordProblems as e:  # nothing written: a table over fewer seeds than the study ran would look complete
        for problem in e.problems:
            print(f"lab analyze: {problem}", file=sys.stderr)
        from lab.sweep.storage import shown

        options = [word for flag, value in (("--runs-dir", args.runs_dir if args.runs_dir != "runs" else None),
                                            ("--storage", shown(args.storage))) if value is not None for word in (flag, value)]
        print(f"lab analyze: run `{shlex.join(['lab', 'sweep', args.name, *options])}` to run them again, or pass "
              f"--partial to analyze the runs that are there", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line; ``SECTION.FIELD=VALUE`` overrides may stand anywhere, also after options."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a or not hasattr(args, "overrides")]
    if stray:  # with the command's own usage: `lab train x.yaml --bogus` is about train
        parser._lab_commands.get(args.command, parser).error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def version() -> str:
    """``lab X.Y.Z``, with the git commit (``+dirty`` with uncommitted changes) when the code is a git checkout."""
    from lab import __version__

    from lab import git_commit

    commit = git_commit()
    return f"lab {__version__}" + (f" (git {commit})" if commit else "")


def _set_verbosity(verbose: bool) -> None:
    """Quiet (the default): hide what the libraries underneath warn and log about themselves; ``lab -v``: show it.

    Quiet, every warning is ignored but lab's own (a ``UserWarning`` raised in ``lab`` or ``analysis``, such as
    W&B falling back to offline), and log records that reach the root logger go nowhere, so that no library's
    logger falls back to printing on stderr (matplotlib's font notes, say) and Lightning, finding a handler
    there, adds none of its own; torch, which has handlers of its own, logs errors only (``TORCH_LOGS``, unless
    set). ``lab.train`` hides Lightning's info lines and internal warnings itself, also in a sweep's trial
    processes (their logs), which learn ``-v`` from ``LAB_VERBOSE``.
    """
    import logging
    import warnings

    if verbose or os.environ.get(VERBOSE_ENV) == "1":
        os.environ[VERBOSE_ENV] = "1"
        return
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", category=UserWarning, module=r"(lab|analysis)\.")
    logging.getLogger().addHandler(logging.NullHandler())
    if "TORCH_LOGS" not in os.environ:  # torch logs through handlers of its own (torch.compile: "No CUDA runtime ...")
        os.environ["TORCH_LOGS"] = "-all"  # errors only, in the processes started from here too (read on import)
        logging.getLogger("torch").setLevel(logging.ERROR)  # here, where torch is imported already


def _global_options(argv: list[str]) -> list[str]:
    """The options before the command: ``-v --version`` of ``lab -v --version``."""
    options = []
    for word in argv:
        if not word.startswith("-"):
            break
        options.append(word)
    return options


def main(argv: list[str] | None = None) -> int:
    command_line = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--version" in _global_options(argv):  # before the parser and any other import: it answers at once
        print(version())
        return 0
    if command_line:
        from lab.sweep.storage import masked_argv

        sys.argv[1:] = masked_argv(argv)  # what W&B records of a trial's command line: no password
    args = _parse(argv)
    _set_verbosity(args.verbose)
    if args.quiet:
        from lab.progress import QUIET_ENV

        os.environ[QUIET_ENV] = "1"
    from lab.config import ConfigError

    command = {"train": cmd_train, "sweep": cmd_sweep, "analyze": cmd_analyze, "bench": cmd_bench,
               "completion": cmd_completion}[args.command]
    try:
        return command(args)
    except ConfigError as e:
        print(f"lab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `lab ... | head`: the reader has gone; no traceback at exit either (Python's docs)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
