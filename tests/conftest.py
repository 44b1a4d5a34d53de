"""Shared helpers: tiny recipes and sweeps in a temporary project, CIFAR archives in the real on-disk format."""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent  # the project: its shipped sweeps/ and experiments/
# The PostgreSQL server of the tests marked ``postgres`` (distributed sweeps, database outages).
POSTGRES = os.environ.get("LAB_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
_postgres_answer: dict[str, str | None] = {}


def postgres_problem() -> str | None:
    """Why the server at ``POSTGRES`` cannot be used, or None when it answers; asked once per session."""
    if "problem" not in _postgres_answer:
        try:
            import sqlalchemy  # the driver Optuna's RDB storage uses for the same URL

            engine = sqlalchemy.create_engine(POSTGRES, connect_args={"connect_timeout": 5})
            try:
                with engine.connect():
                    pass
            finally:
                engine.dispose()
            _postgres_answer["problem"] = None
        except Exception as e:  # refused, unknown database, no driver, a malformed URL
            lines = str(e).strip().splitlines()
            _postgres_answer["problem"] = f"{type(e).__name__}: {lines[0] if lines else ''}"
    return _postgres_answer["problem"]


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``postgres`` skip when no server answers at LAB_TEST_POSTGRES, but fail under ``CI``."""
    if item.get_closest_marker("postgres") is None or (problem := postgres_problem()) is None:
        return
    message = f"no PostgreSQL server answers at LAB_TEST_POSTGRES={POSTGRES} ({problem})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; under CI the database tests must run, not skip: start the server (README)", pytrace=False)
    pytest.skip(f"{message}; set LAB_TEST_POSTGRES to a reachable server with a database to run this test")


# A recipe small enough for a test: digits, depth 8, a handful of iterations, W&B offline.
TINY_RECIPE = {
    "model": {"arch": "resnet", "depth": 8, "shortcut": "A"},
    "data": {"name": "digits"},
    "optim": {"lr": 0.1, "batch_size": 32, "max_steps": 10, "milestones": [8]},
    "train": {"eval_every": 5, "device": "cpu"},
    "track": {"wandb": "offline"},
}


@pytest.fixture
def study_name():
    """A study name no other test uses, for a study in the PostgreSQL server (deleted afterwards)."""
    import optuna

    name = f"tiny-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        optuna.delete_study(study_name=name, storage=POSTGRES)
    except KeyError:
        pass


def write_project(root: Path, sweep: dict, recipe: dict | None = None, name: str = "tiny") -> Path:
    """``root/experiments/tiny.yaml`` and ``root/sweeps/NAME.yaml``, as a user's project would hold them."""
    (root / "experiments").mkdir(parents=True, exist_ok=True)
    (root / "sweeps").mkdir(exist_ok=True)
    (root / "experiments" / "tiny.yaml").write_text(yaml.safe_dump(recipe or TINY_RECIPE))
    (root / "sweeps" / f"{name}.yaml").write_text(yaml.safe_dump({"recipe": "tiny", **sweep}))
    return root


def lab(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the ``lab`` command as a user would, in ``cwd``."""
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    env.pop("WANDB_SERVICE", None)  # set once a test started W&B in this process: the command starts its own
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def lab_here(monkeypatch, capsys):
    """``lab`` run in this process (``lab.cli.main``), with what it printed and its exit status as ``lab()`` gives
    them: where no boundary of the ``lab`` process is under test (a sweep's trials are still processes of their own,
    forked from one server that this process starts once, not once per command: about 6 s of imports each). The
    subprocess tests (``lab()``: signals, a terminal, what a fresh interpreter prints, e.g.
    ``test_lab_train_of_a_folder_names_it`` and ``test_cli``) keep at least one per command. The environment ``main``
    sets (``LAB_VERBOSE``, ``TORCH_LOGS``) and the SIGINT handler ``lab train`` installs are put back after each call."""
    from lab.cli import main

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        env, on_sigint = dict(os.environ), signal.getsignal(signal.SIGINT)
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse's own refusals
            code = e.code
        finally:
            os.environ.clear()
            os.environ.update(env)
            signal.signal(signal.SIGINT, on_sigint)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(["lab", *args], code, out.out, out.err)

    return run


def train_until_killed(config, iteration: int, monkeypatch) -> None:
    """Train ``config`` until its worker "dies" at ``iteration`` (an exception mid-training leaves the run record as a
    killed process does: checkpoints and metrics up to the last evaluation), then put the training step back."""
    from lab.train.classifier import Classifier
    from lab.train import train

    step = Classifier.training_step

    def dies(self, batch, batch_idx):
        if self.global_step == iteration:
            raise RuntimeError("worker killed")
        return step(self, batch, batch_idx)

    monkeypatch.setattr(Classifier, "training_step", dies)
    try:
        with pytest.raises(RuntimeError, match="worker killed"):
            train(config)
    finally:
        monkeypatch.setattr(Classifier, "training_step", step)


def write_cifar10(root: Path, n_train: int = 100, n_test: int = 20) -> Path:
    """A CIFAR-10 archive as torchvision expects it (``lab.bench.fixtures.write_cifar10``), pixels encoding label and
    channel so tests can check that images and labels stay together."""
    from lab.bench.fixtures import write_cifar10 as write

    return write(root, n_train, n_test, label_pixels=True)


def write_cifar100(root: Path, n_train: int = 60, n_test: int = 20) -> Path:
    """A CIFAR-100 archive: ``train``/``test`` with ``fine_labels``, ``meta`` with ``fine_label_names``."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 100, n)
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        (folder / name).write_bytes(pickle.dumps({"fine_labels": labels.tolist(), "coarse_labels": [0] * n, "data": data}))
    meta = {"fine_label_names": [f"class{i}" for i in range(100)], "coarse_label_names": [f"super{i}" for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return root


@pytest.fixture
def cifar10_dir(tmp_path: Path) -> Path:
    return write_cifar10(tmp_path / "data")


def write_imagefolder(
    root: Path,
    classes: int = 3,
    per_class: int = 6,
    sizes: tuple[tuple[int, int], ...] = ((64, 48), (48, 60), (80, 50), (50, 50)),
    val_per_class: int = 2,
) -> Path:
    """An ImageFolder (``root/train/CLASS/*.jpg``, ``root/val/CLASS/*.jpg``) of JPEGs of varied sizes (W x H).

    Pixels encode what the tests check: red is ``60 * label + 30`` everywhere (images keep their labels
    through resizing and cropping), green rises from left to right and blue from top to bottom (so a
    crop's position, scale and mirroring can be read back from it). Saved at quality 95 without chroma
    subsampling, so JPEG changes a pixel by a few levels at most.
    """
    for split, n in (("train", per_class), ("val", val_per_class)):
        for label in range(classes):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(n):
                w, h = sizes[(i + label) % len(sizes)]
                image = np.empty((h, w, 3), dtype=np.uint8)
                image[..., 0] = 60 * label + 30
                image[..., 1] = np.linspace(0, 255, w).round().astype(np.uint8)[None, :]
                image[..., 2] = np.linspace(0, 255, h).round().astype(np.uint8)[:, None]
                Image.fromarray(image).save(folder / f"img{i}.jpg", quality=95, subsampling=0)
    return root


def one_error(capsys, code: int) -> str:
    """The one line a refused command printed (exit status 2)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, (code, err)
    return lines[0]
