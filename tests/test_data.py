import itertools
from types import SimpleNamespace

import pytest
import torch

from lab.config import ConfigError, DataConfig, make_config
from lab.data import EvalBatches, Split, TrainStream, augment, load_dataset
from lab.train.datamodules import make_datamodule
from tests.conftest import TINY_RECIPE, write_cifar100


def test_digits_split_is_fixed_disjoint_and_complete():
    a, b = load_dataset(DataConfig(name="digits")), load_dataset(DataConfig(name="digits"))
    assert (len(a.train), len(a.val), len(a.test)) == (1258, 180, 359)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert a.in_channels == 1 and a.train.x.shape[1:] == (1, 8, 8) and a.num_classes == 10
    rows = {tuple(x.flatten().tolist()) for s in (a.train, a.val, a.test) for x in s.x}
    assert len(rows) > 1700  # real images, (nearly) all distinct
    other = load_dataset(DataConfig(name="digits", split_seed=1))
    assert not torch.equal(other.test.y, a.test.y)


def test_cifar10_archive_loads_with_the_papers_split(cifar10_dir):
    d = load_dataset(DataConfig(name="cifar10", data_dir=str(cifar10_dir), val_size=10, verify_md5=False))
    assert (len(d.train), len(d.val), len(d.test)) == (90, 10, 20)
    assert d.train.x.dtype == torch.uint8 and d.train.x.shape[1:] == (3, 32, 32)
    for split in (d.train, d.val, d.test):  # pixels encode 20 * label + channel: images kept their labels
        expected = 20 * split.y[:, None] + torch.arange(3)[None, :]
        assert torch.equal(split.x[:, :, 5, 7].long(), expected)
    assert d.mean.shape == (3,) and d.num_classes == 10


def test_cifar100_archive_loads(tmp_path):
    d = load_dataset(DataConfig(name="cifar100", data_dir=str(write_cifar100(tmp_path)), val_size=6, verify_md5=False))
    assert (len(d.train), len(d.val), len(d.test), d.num_classes) == (54, 6, 20, 100)


def test_cifar_checksums_are_checked_by_default(cifar10_dir):
    with pytest.raises(ConfigError, match="data.data_dir"):
        load_dataset(DataConfig(name="cifar10", data_dir=str(cifar10_dir)))


def test_missing_cifar_says_where_and_how(tmp_path):
    with pytest.raises(ConfigError, match=r"data.data_dir: no usable cifar10 archive .*data.download=true"):
        load_dataset(DataConfig(name="cifar10", data_dir=str(tmp_path / "nothing")))


def test_crop_is_a_window_of_the_zero_padded_image():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.uint8).view(2, 3, 6, 6).repeat(50, 1, 1, 1)
    out = augment(x, pad=2, flip=False, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    assert out.shape == x.shape
    shifts = set()
    for i in range(len(x)):
        windows = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(out[i], padded[i, :, dy : dy + 6, dx : dx + 6])]
        assert windows, "every crop is some window of the padded image"
        shifts.add(windows[0])
    assert len(shifts) > 10  # offsets vary from image to image


def test_flip_mirrors_about_half_the_images():
    x = torch.randint(0, 255, (400, 3, 4, 4), dtype=torch.uint8)
    out = augment(x, pad=0, flip=True, generator=torch.Generator().manual_seed(0))
    same = [torch.equal(o, i) for o, i in zip(out, x)]
    mirrored = [torch.equal(o, i.flip(2)) for o, i in zip(out, x)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 150 < sum(mirrored) < 250


def test_training_stream_is_a_function_of_seed_and_iteration(cifar10_dir):
    d = load_dataset(DataConfig(name="cifar10", data_dir=str(cifar10_dir), val_size=10, verify_md5=False))

    def stream(seed, start=0):
        return TrainStream(d.train, d.mean, d.std, 32, seed, pad=4, flip=True, start=lambda: start)

    first = list(itertools.islice(stream(0), 6))
    assert all(x.shape == (32, 3, 32, 32) and x.dtype == torch.float32 for x, _ in first)
    # 90 images, batches of 32: passes of 2 full batches (the last 26 images of a pass left out), each pass
    # 64 distinct images in a new order. The order depends on the seed and the split's size only, so a
    # stream over images that are their own index (unaugmented, unnormalised) shows which images came.
    ids = TrainStream(Split(torch.arange(90, dtype=torch.uint8).view(90, 1, 1, 1), d.train.y),
                      torch.zeros(1), torch.ones(1), 32, seed=0)
    orders = []
    for p in range(3):
        index = torch.cat([ids.batch(i)[0].flatten() for i in (2 * p, 2 * p + 1)]).long()
        assert len(set(index.tolist())) == 64, "no image twice in a pass"
        assert torch.equal(torch.cat([y for _, y in first[2 * p : 2 * p + 2]]), d.train.y[index])  # labels kept
        orders.append(index.tolist())
    assert orders[0] != orders[1] != orders[2]  # every pass reshuffles
    resumed = list(itertools.islice(stream(0, start=3), 3))  # a run resumed at iteration 3
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first[3:], resumed))
    assert not torch.equal(first[0][0], next(iter(stream(1)))[0])
    evaluation = list(EvalBatches(d.test, d.mean, d.std, 8))
    assert [len(y) for _, y in evaluation] == [8, 8, 4]  # every test image, in order, unaugmented
    assert torch.equal(torch.cat([y for _, y in evaluation]), d.test.y)


def test_each_pass_is_a_permutation_of_the_training_images():
    d = load_dataset(DataConfig(name="digits"))
    stream = TrainStream(d.train, d.mean, d.std, 128, seed=0)
    stream.batch(0)
    first = stream._order.clone()
    assert sorted(first.tolist()) == list(range(len(d.train)))
    stream.batch(len(d.train) // 128)  # the first batch of the second pass
    assert sorted(stream._order.tolist()) == list(range(len(d.train))) and not torch.equal(stream._order, first)


def _train_batches(crop_pad: int, flip: bool, seed: int = 3, n: int = 3) -> tuple[torch.Tensor, list]:
    """The training images, and the first ``n`` training batches of a recipe with these ``data.crop_pad`` and
    ``data.flip`` as ``train`` makes them (config -> datamodule -> stream), turned back into uint8 pixels."""
    config = make_config(TINY_RECIPE, {"data.crop_pad": crop_pad, "data.flip": flip, "optim.batch_size": 64,
                                       "train.seed": seed})
    datamodule = make_datamodule(config.data, config.optim.batch_size, config.train.seed)
    # what the datamodule reads of its trainer: the device, and the iteration to start from
    datamodule.trainer = SimpleNamespace(global_step=0, strategy=SimpleNamespace(root_device=torch.device("cpu")))
    datamodule.setup("fit")
    d = datamodule.data
    mean, std = d.mean.view(1, -1, 1, 1), d.std.view(1, -1, 1, 1)
    batches = list(itertools.islice(iter(datamodule.train_dataloader()), n))
    return d.train.x, [((x * std + mean).round().to(torch.uint8), y) for x, y in batches]


def test_recipes_augmentation_reaches_the_training_batches():
    """data.crop_pad=4, data.flip=true: every training image is a shifted window of its zero-padded image,
    mirrored about half the time (He 2015, Section 4.2); crop_pad=0, flip=false: the images as they are.
    Same seed, same batches; the images of a batch do not depend on the augmentation."""
    images, plain = _train_batches(0, False)
    originals = {x.numpy().tobytes() for x in images}
    for x, _ in plain:
        assert all(image.numpy().tobytes() in originals for image in x), "unaugmented: the training images themselves"
    _, augmented = _train_batches(4, True)
    assert all(torch.equal(a, b) and torch.equal(y, z) for (a, y), (b, z) in zip(augmented, _train_batches(4, True)[1]))
    assert not torch.equal(augmented[0][0], _train_batches(4, True, seed=4)[1][0][0])
    shifts, mirrored, changed = set(), 0, 0
    for (x, y), (original, y0) in zip(augmented, plain):
        assert torch.equal(y, y0)
        windows = torch.nn.functional.pad(original, (4, 4, 4, 4)).unfold(2, 8, 1).unfold(3, 8, 1)  # N x 1 x 9 x 9 x 8 x 8
        as_is = (windows == x[:, :, None, None]).flatten(-2).all(-1).flatten(1)  # N x 81: x is window (dy, dx)
        flipped = (windows == x.flip(-1)[:, :, None, None]).flatten(-2).all(-1).flatten(1)
        assert (as_is | flipped).any(1).all(), "every image is a (mirrored) window of its padded image"
        mirrored += int((flipped.any(1) & ~as_is.any(1)).sum())
        changed += sum(not torch.equal(a, b) for a, b in zip(x, original))
        shifts |= {divmod(int(k), 9) for k in (as_is | flipped).float().argmax(1)}
    total = sum(len(y) for _, y in plain)
    assert changed > 0.9 * total  # unchanged: offset (4, 4) and not mirrored, 1 in 162 (and blank edges)
    assert 0.3 * total < mirrored < 0.7 * total
    assert len(shifts) > 40  # of the 9 x 9 offsets
