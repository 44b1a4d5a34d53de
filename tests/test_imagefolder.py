"""ImageFolder data (He 2015, Section 3.4 augmentation, a DataLoader pipeline) and the plateau / warm-up schedules."""
import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lab.config import ConfigError, DataConfig, load_config, make_config
from lab.data.imagefolder import (
    EvalView,
    ImageFiles,
    TrainView,
    eval_loader,
    imagefolder_shape,
    load_imagefolder,
    mean_image,
    train_loader,
)
from lab.train.schedule import LrSchedule, WARMUP_WINDOW
from lab.records import run_dir_for
from lab.train import train
from tests.conftest import TINY_RECIPE, train_until_killed, write_imagefolder

ROOT = Path(__file__).resolve().parent.parent
SMALL = dict(scale=[36, 48], crop=32, eval_resize=36, flip=True, val_size=2, workers=0)  # a 224-crop recipe, shrunk


@pytest.fixture
def folder(tmp_path):
    return write_imagefolder(tmp_path / "data")  # 3 classes x 6 train (2 held out as val) + 3 x 2 val


def data_cfg(folder, **changes) -> DataConfig:
    return DataConfig(name="imagefolder", data_dir=str(folder), **{**SMALL, **changes})


def red_label(x: torch.Tensor) -> torch.Tensor:
    """The label each image's red channel encodes (60 * label + 30)."""
    return ((x[:, 0].float().mean((1, 2)) - 30) / 60).round().long()


def test_shape_is_known_without_decoding_and_defaults_to_imagenet(folder, tmp_path):
    assert imagefolder_shape(data_cfg(folder)) == (3, 32, 32, 3)
    assert imagefolder_shape(DataConfig(name="imagefolder", data_dir=str(tmp_path / "absent"))) == (3, 224, 224, 1000)


def test_val_is_held_out_of_train_and_test_is_the_val_folder(folder):
    d = load_imagefolder(data_cfg(folder))
    assert (len(d.train), len(d.val), len(d.test), d.num_classes, d.in_channels) == (16, 2, 6, 3, 3)
    assert not set(d.train.paths) & set(d.val.paths)
    assert all(b"/train/" in p for p in (*d.train.paths, *d.val.paths)) and all(b"/val/" in p for p in d.test.paths)
    again, other = load_imagefolder(data_cfg(folder)), load_imagefolder(data_cfg(folder, split_seed=1))
    assert list(again.val.paths) == list(d.val.paths) and list(other.val.paths) != list(d.val.paths)


def test_training_batches_are_uint8_crops_that_keep_their_labels(folder):
    cfg = data_cfg(folder)
    batches = list(itertools.islice(train_loader(load_imagefolder(cfg).train, cfg, 4, seed=0), 8))
    for x, y in batches:
        assert x.shape == (4, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
        assert torch.equal(red_label(x), y)
    # 16 training images, batches of 4: each pass of 4 batches is a permutation (every image once)
    assert sorted(torch.cat([y for _, y in batches[:4]]).tolist()) == sorted(load_imagefolder(cfg).train.labels.tolist())


def test_training_views_are_random_rescales_crops_and_flips(folder):
    """Read scale, offset and mirroring back from the green ramp (0..255 left to right) of a 64x48 image."""
    cfg = data_cfg(folder)
    d = load_imagefolder(cfg)
    view = ImageFiles(d.train, TrainView((36, 48), 32, flip=True))
    index = next(i for i, p in enumerate(d.train.paths) if Image.open(p.decode()).size == (64, 48))
    shorter, left, flipped = [], [], []
    for seed in range(60):
        x, _ = view[(index, seed, 0)]
        green = x[1].float().mean(0).numpy()
        slope, intercept = np.polyfit(np.arange(4, 28), green[4:28], 1)  # away from the borders
        flipped.append(slope < 0)
        slope, start = abs(slope), (green[::-1] if slope < 0 else green)
        width = 255 / 63 * 64 / slope  # resized width: the ramp rises 255/63 per source column
        shorter.append(width * 48 / 64)
        left.append(np.polyval(np.polyfit(np.arange(4, 28), start[4:28], 1), 0) / slope)
    assert all(35.5 < s < 48.5 for s in shorter), "shorter side resized within data.scale"
    assert min(shorter) < 39 and max(shorter) > 45, "scales spread over the range"
    assert len({round(v) for v in left}) > 8, "crop offsets vary"
    assert 15 < sum(flipped) < 45, "about half the views are mirrored"


def test_evaluation_is_the_deterministic_center_crop(folder):
    from torchvision import transforms as T

    cfg = data_cfg(folder)
    d = load_imagefolder(cfg)
    reference = T.Compose([T.Resize(36), T.CenterCrop(32), T.PILToTensor()])
    view = EvalView(36, 32)
    for path in d.test.paths:
        ours = view(path.decode())
        expected = reference(Image.open(path.decode()).convert("RGB"))
        assert torch.equal(ours, view(path.decode()))
        # The same window: PIL resamples only it, and rounds between its two passes in another order (<= 2 levels)
        difference = (ours.int() - expected.int()).abs()
        assert difference.max() <= 2 and difference.float().mean() < 0.25
    x, y = next(iter(eval_loader(d.test, cfg, 100)))
    assert len(y) == 6 and torch.equal(y, torch.from_numpy(d.test.labels)) and torch.equal(red_label(x), y)


def test_batch_i_depends_on_seed_and_i_only_not_on_workers_or_resume(folder):
    cfg = data_cfg(folder)
    files = load_imagefolder(cfg).train

    def batches(workers: int, start: int = 0, seed: int = 0, n: int = 6):
        loader = train_loader(files, data_cfg(folder, workers=workers), 4, seed, start=lambda: start)
        return list(itertools.islice(loader, n))

    alone, parallel, resumed = batches(0), batches(2), batches(2, start=3, n=3)
    for a, b in zip(alone, parallel):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for a, b in zip(alone[3:], resumed):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(alone[0][0], batches(0, seed=1, n=1)[0][0])


def test_mean_image_is_per_pixel_and_the_same_with_workers(folder):
    mean, std = mean_image(load_imagefolder(data_cfg(folder)).train, data_cfg(folder))
    mean2, std2 = mean_image(load_imagefolder(data_cfg(folder)).train, data_cfg(folder, workers=2))
    assert mean.shape == (3, 32, 32) and std.shape == (3,)
    assert torch.equal(mean, mean2) and torch.equal(std, std2)
    assert mean[2, -1].mean() - mean[2, 0].mean() > 100, "blue rises top to bottom: a mean image, not a mean colour"
    assert 80 < mean[0].mean() < 100  # red: 30, 90, 150 for the three classes


def test_a_missing_or_empty_folder_names_the_path_and_the_layout(tmp_path):
    with pytest.raises(ConfigError, match=r"^data.data_dir: no ImageFolder at .*nothing: expected .*/train/CLASS/\*.jpg"):
        load_imagefolder(data_cfg(tmp_path / "nothing"))
    for split in ("train/a", "val/a"):
        (tmp_path / "empty" / split).mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"^data.data_dir: no images in .*empty/train: expected"):
        load_imagefolder(data_cfg(tmp_path / "empty"))


@pytest.mark.parametrize(
    "change,message",
    [
        ({"data.scale": [48, 36]}, r"^data.scale: \[48, 36\] must be \[lo, hi\] with data.crop=32 <= lo <= hi"),
        ({"data.scale": [30, 48]}, r"^data.scale: .* data.crop=32 <= lo"),
        ({"data.eval_resize": 30}, r"^data.eval_resize: 30 must be >= data.crop=32"),
        ({"data.crop": 0}, r"^data.crop: must be > 0"),
        ({"data.workers": -1}, r"^data.workers: must be >= 0"),
        ({"data.data_dir": None}, r"^data.data_dir: set it to the folder holding train/CLASS/\*.jpg"),
        ({"data.crop_pad": 4}, r"^data.crop_pad: is for CIFAR"),
        ({"data.mean_images": 0}, r"^data.mean_images: must be at least 1"),
        ({"optim.schedule": "cosine"}, r"^optim.schedule: 'cosine' is not one of step, plateau"),
        ({"optim.schedule": "plateau", "optim.milestones": [8]}, r"^optim.milestones: \[8\]: the plateau schedule has no"),
        ({"optim.plateau_patience": 0}, r"^optim.plateau_patience: must be at least 1"),
        ({"optim.min_lr": 1.0}, r"^optim.min_lr: must be in \(0, optim.lr=0.1\]"),
        ({"optim.warmup_until_err": 80.0}, r"^optim.warmup_until_err: 80.0 must be .* with warmup_lr and warmup_steps"),
        ({"optim.gamma": 10}, r"^optim.gamma: 10.0 must be between 0 and 1"),
    ],
)
def test_bad_fields_are_one_line_naming_the_field(tmp_path, change, message):
    recipe = {**TINY_RECIPE, "data": {"name": "imagefolder", "data_dir": str(tmp_path), **SMALL}}
    with pytest.raises(ConfigError, match=message) as e:
        make_config(recipe, change)
    assert "\n" not in str(e.value)


def schedule(**optim) -> LrSchedule:
    return LrSchedule(make_config(TINY_RECIPE, {f"optim.{k}": v for k, v in optim.items()}).optim)


def test_plateau_divides_lr_after_patience_evaluations_without_improvement():
    s = schedule(schedule="plateau", milestones=[], plateau_patience=2, plateau_threshold=0.5, min_lr=0.001)
    drops = [s.observe_val_err(e) for e in (50.0, 40.0, 39.8, 39.7, 39.0, 38.0, 37.9, 37.8, 37.7, 37.6, 37.5, 37.4)]
    # 39.8 and 39.7 beat 40.0 by less than 0.5: two evaluations without improvement, lr / 10; likewise at 37.8;
    # the next plateau would go below min_lr (0.1 -> 0.01 -> 0.001 is the floor), so lr stays
    assert drops == [False, False, False, True, False, False, False, True, False, False, False, False]
    assert s(10**6) == pytest.approx(0.01)
    assert schedule()(5) == 1.0 and not schedule().observe_val_err(50.0), "the step schedule ignores val_err"


def test_plateau_and_warmup_state_survive_a_checkpoint_round_trip():
    def make():
        s = schedule(schedule="plateau", milestones=[], plateau_patience=2, warmup_lr=0.01, warmup_steps=50, warmup_until_err=80.0)
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        return s, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, s)

    s, optimizer, scheduler = make()
    for step in range(12):
        s.observe_train_err(step, 95.0 if step < 4 else 50.0)
        optimizer.step()
        scheduler.step()
    for err in (30.0, 31.0):
        s.observe_val_err(err)
    buffer = io.BytesIO()
    torch.save({"scheduler": scheduler.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=False)
    s2, optimizer2, scheduler2 = make()
    scheduler2.load_state_dict(state["scheduler"])
    optimizer2.load_state_dict(state["optimizer"])
    assert s2.__dict__ == s.__dict__ and s.warmup_ended is not None and s.bad_evals == 1
    assert s2.observe_val_err(32.0) and s.observe_val_err(32.0), "the pending evaluation counts after a resume"
    for opt, sched in ((optimizer, scheduler), (optimizer2, scheduler2)):
        for _ in range(3):
            opt.step()
            sched.step()
    assert scheduler2.get_last_lr() == scheduler.get_last_lr() == [pytest.approx(0.01)]


def test_warmup_ends_once_the_training_error_is_below_the_threshold():
    s = schedule(warmup_lr=0.01, warmup_steps=400, warmup_until_err=80.0, milestones=[1000], max_steps=2000)
    errs = [90.0] * 30 + [70.0] * 30
    for step, err in enumerate(errs):
        if s.warming_up_until_err():
            s.observe_train_err(step, err)
    # the mean of the last WARMUP_WINDOW (10) batch errors first drops below 80 with 6 batches at 70: step 35
    assert WARMUP_WINDOW == 10 and s.warmup_ended == 36
    assert [s(k) for k in (0, 35, 36, 999, 1000)] == pytest.approx([0.1, 0.1, 1.0, 1.0, 0.1])


def test_warmup_ends_at_the_cap_when_the_error_stays_high():
    s = schedule(warmup_lr=0.01, warmup_steps=20, warmup_until_err=80.0, milestones=[])
    for step in range(40):
        if s.warming_up_until_err():
            s.observe_train_err(step, 95.0)
    assert s.warmup_ended == 20 and s(19) == pytest.approx(0.1) and s(20) == 1.0


@pytest.mark.parametrize("until_err,ended,lr_at_5", [(100.0, 1, 0.1), (0.5, 8, 0.01)])
def test_training_records_where_the_warmup_ended(tmp_path, until_err, ended, lr_at_5):
    overrides = {"track.runs_dir": str(tmp_path), "track.wandb": "disabled", "optim.warmup_lr": 0.01,
                 "optim.warmup_steps": 8, "optim.warmup_until_err": until_err, "optim.milestones": []}
    cfg = make_config(TINY_RECIPE, overrides)
    summary = train(cfg)
    rows = [json.loads(line) for line in (run_dir_for(cfg) / "metrics.jsonl").read_text().splitlines()]
    assert summary["warmup_ended"] == ended and rows[0]["lr"] == pytest.approx(lr_at_5)
    without = make_config(TINY_RECIPE, {"track.runs_dir": str(tmp_path / "no-warmup"), "track.wandb": "disabled"})
    assert train(without)["warmup_ended"] is None


def imagefolder_recipe(folder, **optim) -> dict:
    return {
        **TINY_RECIPE,
        "data": {"name": "imagefolder", "data_dir": str(folder), **SMALL},
        "optim": {"lr": 0.1, "batch_size": 4, "max_steps": 12, "schedule": "plateau", "milestones": [], **optim},
        "train": {"eval_every": 3, "device": "cpu"},
    }


def test_the_imagenet_recipe_trains_on_an_imagefolder_and_writes_a_run_record(folder, tmp_path):
    shrunk = {f"data.{k}": v for k, v in SMALL.items()}
    overrides = {**shrunk, "data.data_dir": str(folder), "model.depth": 18, "optim.batch_size": 4, "optim.max_steps": 3,
                 "train.eval_every": 3, "train.device": "cpu", "track.runs_dir": str(tmp_path / "runs"), "track.wandb": "disabled"}
    cfg = load_config(ROOT / "experiments" / "imagenet.yaml", overrides)
    summary = train(cfg)
    assert (summary["run"], summary["dataset"], summary["steps"]) == ("resnet-18-B-s0", "imagefolder", 3)
    assert summary["params"] == 11_689_512 - 1000 * 513 + 3 * 513, "torchvision's ResNet-18 with a 3-way classifier"
    assert 0 <= summary["test_err"] <= 100 and (run_dir_for(cfg) / "summary.json").is_file()


def test_a_killed_imagefolder_run_resumes_exactly_with_another_number_of_workers(folder, tmp_path, monkeypatch):
    recipe = imagefolder_recipe(folder, plateau_patience=1, warmup_lr=0.01, warmup_steps=5, warmup_until_err=70.0)
    straight = make_config(recipe, {"track.runs_dir": str(tmp_path / "straight"), "track.wandb": "disabled"})
    broken = make_config(recipe, {"track.runs_dir": str(tmp_path / "broken"), "track.wandb": "disabled", "data.workers": 2})
    first = train(straight)
    train_until_killed(broken, 8, monkeypatch)
    resumed = train(broken)  # from the checkpoint of iteration 6: after the warm-up and a plateau

    def rows(cfg):
        return [json.loads(line) for line in (run_dir_for(cfg) / "metrics.jsonl").read_text().splitlines()]

    assert [r["iteration"] for r in rows(broken)] == [3, 6, 9, 12]
    assert rows(broken) == rows(straight)  # as if never stopped, with 2 workers instead of none
    assert resumed["warmup_ended"] == first["warmup_ended"] is not None
    assert len({r["lr"] for r in rows(straight)}) > 1, "the plateau schedule changed lr"
