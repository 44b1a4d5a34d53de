"""Run records (local, always: the source of truth) and their W&B mirror (offline unless configured)."""
from __future__ import annotations

import errno
import json
import netrc
import os
import platform
import socket
import subprocess
import warnings
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

import torch
from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from lab.config import Config
from lab.records import METRICS_FILE, write_atomic

WANDB_INIT_TIMEOUT_S = 30


class RecordLogger(Logger):
    """Appends every logged row to ``metrics.jsonl`` in the run folder: one line, one write (``append_line``)."""

    def __init__(self, run_dir: Path, rows: list[dict[str, float]] | None = None) -> None:
        """``rows``: those of an earlier attempt to keep (up to its checkpoint; ``train`` reads them) and go on from;
        None: a fresh record."""
        super().__init__()
        self.run_dir = Path(run_dir)
        self.rows: list[dict[str, float]] = list(rows or [])
        if rows is not None:
            write_atomic(self.run_dir / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in self.rows))

    @property
    def name(self) -> str:
        return "record"

    @property
    def version(self) -> str:
        return self.run_dir.name

    @property
    def save_dir(self) -> str:
        return str(self.run_dir)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass  # the resolved config is written as config.yaml before training starts

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        # Lightning's ``step`` lags the iteration count by one here; rows carry ``iteration`` instead.
        row = {k: float(v) for k, v in metrics.items()}
        append_line(self.run_dir / METRICS_FILE, json.dumps(row) + "\n")
        self.rows.append(row)


def append_line(path: Path, line: str) -> None:
    """Append ``line`` with one write; a failed or short write (a full disk) is undone, so no torn line is left."""
    data = line.encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)", str(path))
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def code_version() -> str:
    """The git commit of the code that ran (``+dirty`` with uncommitted changes), or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if sha.returncode:
        return "unknown"
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def hardware(device: torch.device) -> dict[str, Any]:
    info = {
        "host": socket.gethostname(),
        "device": device.type,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    else:
        info["device_name"] = f"{_cpu_model()} ({os.cpu_count()} cores)"
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def wandb_api_key_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(setting: str) -> str:
    """``auto`` follows ``WANDB_MODE`` if set, else online with an API key, offline without one."""
    if setting != "auto":
        return setting
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled"):
        return env
    return "online" if wandb_api_key_configured() else "offline"


def make_wandb_logger(config: Config, run_dir: Path, run_name: str, run_id: str | None = None) -> WandbLogger | None:
    """A W&B run named like the paper, grouped by study, tagged, with the whole config; ``None`` when disabled.

    ``run_id`` continues an earlier attempt's W&B run (W&B's resume) when a run resumes from its checkpoint.

    An online run that cannot reach the server within ``WANDB_INIT_TIMEOUT_S`` falls back to offline,
    so training never waits on the network; offline runs are synced later with ``wandb sync``.
    """
    mode = wandb_mode(config.track.wandb)
    if mode == "disabled":
        return None
    import wandb

    m = config.model
    tags = [m.arch, f"depth-{m.depth}", f"shortcut-{m.shortcut}", f"{m.style}-style", config.data.name]
    for attempt in (mode, "offline") if mode == "online" else (mode,):
        logger = WandbLogger(
            name=run_name,
            id=run_id,
            save_dir=str(run_dir),
            project=config.track.project,
            entity=config.track.entity,
            group=config.track.study,
            tags=tags,
            config=config.to_dict(),
            mode=attempt,
            settings=wandb.Settings(init_timeout=WANDB_INIT_TIMEOUT_S, console="off", silent=True),
        )
        try:
            logger.experiment  # start the run now, so a network failure shows here and not mid-training
            return logger
        except Exception as e:  # wandb raises several kinds of errors for an unreachable server
            warnings.warn(f"W&B {attempt} run could not start ({e}); logging offline instead")
    return None
