"""Writes what tests/previous-main holds, with the ``lab`` on PYTHONPATH (a checkout of the previous main):
``PYTHONPATH=CHECKOUT python make.py OUT``; then copy OUT's files as README.md says."""
import os
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
out = Path(sys.argv[1]).resolve()
for folder in ("experiments", "sweeps"):
    (out / folder).mkdir(parents=True, exist_ok=True)
    for f in (HERE / folder).iterdir():
        (out / folder / f.name).write_text(f.read_text())
os.chdir(out)
env = {**os.environ, "WANDB_MODE": "offline"}
subprocess.run([sys.executable, "-m", "lab", "sweep", "tiny", "-q"], check=True, env=env)
subprocess.run([sys.executable, "-m", "lab", "analyze", "tiny"], check=True, env=env)

from lab.config import make_config  # noqa: E402  (the previous main's)
from lab.train import train  # noqa: E402
from lab.train.classifier import Classifier  # noqa: E402

step = Classifier.training_step
recipe = yaml.safe_load((out / "experiments" / "tiny.yaml").read_text())
for study, kill_at in (("killed", 5), ("whole", None)):
    def dies(self, batch, i, kill_at=kill_at):
        if self.global_step == kill_at:
            raise RuntimeError("killed")
        return step(self, batch, i)

    Classifier.training_step = dies
    try:
        train(make_config(recipe, {"track.study": study, "model.arch": "plain"}))
    except RuntimeError:
        pass
