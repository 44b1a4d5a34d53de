"""The ``lab`` command line, parsed: its parser (every command, option and example, with the shell-completion hints
of ``lab completion``), its ``SECTION.FIELD=VALUE`` overrides and ``lab --version``. Imports no torch until the
parser is built."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

VERBOSE_ENV = "LAB_VERBOSE"  # "1": everything the libraries say; trial processes of a sweep inherit it


class _Version(argparse.Action):
    """``--version``: print :func:`version` and exit (``main`` answers it before the parser is even built)."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        parser.exit(message=version() + "\n")


def make_parser() -> argparse.ArgumentParser:
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
_SWEEP_DIRS = '"./sweeps" "' + str(Path(__file__).resolve().parents[2] / "sweeps") + '"'
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


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line; ``SECTION.FIELD=VALUE`` overrides may stand anywhere, also after options."""
    parser = make_parser()
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a or not hasattr(args, "overrides")]
    if stray:  # with the command's own usage: `lab train x.yaml --bogus` is about train
        parser._lab_commands.get(args.command, parser).error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def overrides_of(items: list[str]) -> dict:
    from lab.config import parse_override

    return dict(parse_override(item) for item in items)


def version() -> str:
    """``lab X.Y.Z``, with the git commit (``+dirty`` with uncommitted changes) when the code is a git checkout."""
    from lab import __version__

    from lab import git_commit

    commit = git_commit()
    return f"lab {__version__}" + (f" (git {commit})" if commit else "")
