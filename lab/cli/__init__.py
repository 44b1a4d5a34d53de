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
from pathlib import Path

from lab.cli.parser import COMPLETION_PREAMBLE, VERBOSE_ENV, make_parser, overrides_of, parse, version



def cmd_train(args: argparse.Namespace) -> int:
    from lab.config import ConfigError, load_config, name_problem

    config = load_config(args.config, overrides_of(args.overrides))  # before the heavy imports: errors come fast
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
        from lab.train.progress import EvaluationLines, progress_bar

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

    print(shtab.complete(make_parser(), shell=args.shell, preamble=COMPLETION_PREAMBLE))
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
    args = parse(argv)
    _set_verbosity(args.verbose)
    if args.quiet:
        from lab.progress import QUIET_ENV

        os.environ[QUIET_ENV] = "1"
    from lab.config import ConfigError

    from lab.cli.sweep import cmd_sweep

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
