import itertools

import pytest
import torch

from lab.config import ConfigError, DataConfig
from lab.data import EvalBatches, TrainStream, augment, load_dataset
from tests.conftest import write_cifar100


def test_digits_split_is_fixed_disjoint_and_complete():
    a, b = load_dataset(DataConfig("digits")), load_dataset(DataConfig("digits"))
    assert (len(a.train), len(a.val), len(a.test)) == (1258, 180, 359)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert a.in_channels == 1 and a.train.x.shape[1:] == (1, 8, 8) and a.num_classes == 10
    rows = {tuple(x.flatten().tolist()) for s in (a.train, a.val, a.test) for x in s.x}
    assert len(rows) > 1700  # real images, (nearly) all distinct
    other = load_dataset(DataConfig("digits", split_seed=1))
    assert not torch.equal(other.test.y, a.test.y)


def test_cifar10_archive_loads_with_the_papers_split(cifar10_dir):
    d = load_dataset(DataConfig("cifar10", data_dir=str(cifar10_dir), val_size=10, verify_md5=False))
    assert (len(d.train), len(d.val), len(d.test)) == (90, 10, 20)
    assert d.train.x.dtype == torch.uint8 and d.train.x.shape[1:] == (3, 32, 32)
    for split in (d.train, d.val, d.test):  # pixels encode 20 * label + channel: images kept their labels
        expected = 20 * split.y[:, None] + torch.arange(3)[None, :]
        assert torch.equal(split.x[:, :, 5, 7].long(), expected)
    assert d.mean.shape == (3,) and d.num_classes == 10


def test_cifar100_archive_loads(tmp_path):
    d = load_dataset(DataConfig("cifar100", data_dir=str(write_cifar100(tmp_path)), val_size=6, verify_md5=False))
    assert (len(d.train), len(d.val), len(d.test), d.num_classes) == (54, 6, 20, 100)


def test_cifar_checksums_are_checked_by_default(cifar10_dir):
    with pytest.raises(ConfigError, match="data.data_dir"):
        load_dataset(DataConfig("cifar10", data_dir=str(cifar10_dir)))


def test_missing_cifar_says_where_and_how(tmp_path):
    with pytest.raises(ConfigError, match=r"data.data_dir: no usable cifar10 archive .*data.download=true"):
        load_dataset(DataConfig("cifar10", data_dir=str(tmp_path / "nothing")))


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
    d = load_dataset(DataConfig("cifar10", data_dir=str(cifar10_dir), val_size=10, verify_md5=False))

    def stream(seed, start=0):
        return TrainStream(d.train, d.mean, d.std, 32, seed, pad=4, flip=True, start=lambda: start)

    first = list(itertools.islice(stream(0), 6))
    assert all(x.shape == (32, 3, 32, 32) and x.dtype == torch.float32 for x, _ in first)
    # 90 images, batches of 32: passes of 2 full batches, each pass a permutation of distinct images
    for p in range(3):
        labels_seen = torch.cat([y for _, y in first[2 * p : 2 * p + 2]])
        assert len(labels_seen) == 64
    resumed = list(itertools.islice(stream(0, start=3), 3))  # a run resumed at iteration 3
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first[3:], resumed))
    assert not torch.equal(first[0][0], next(iter(stream(1)))[0])
    evaluation = list(EvalBatches(d.test, d.mean, d.std, 8))
    assert [len(y) for _, y in evaluation] == [8, 8, 4]  # every test image, in order, unaugmented
    assert torch.equal(torch.cat([y for _, y in evaluation]), d.test.y)


def test_each_pass_is_a_permutation_of_the_training_images():
    d = load_dataset(DataConfig("digits"))
    stream = TrainStream(d.train, d.mean, d.std, 128, seed=0)
    stream.batch(0)
    first = stream._order.clone()
    assert sorted(first.tolist()) == list(range(len(d.train)))
    stream.batch(len(d.train) // 128)  # the first batch of the second pass
    assert sorted(stream._order.tolist()) == list(range(len(d.train))) and not torch.equal(stream._order, first)
