import pytest
import torch

from lab.config import ConfigError, DataConfig
from lab.data import Batches, augment, load_dataset
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


def test_training_batches_are_full_shuffled_normalised_and_reproducible(cifar10_dir):
    d = load_dataset(DataConfig("cifar10", data_dir=str(cifar10_dir), val_size=10, verify_md5=False))

    def first_epoch(seed):
        return list(Batches(d.train, d.mean, d.std, 32, torch.Generator().manual_seed(seed), pad=4, flip=True))

    a, b = first_epoch(0), first_epoch(0)
    assert len(a) == 90 // 32 and all(x.shape == (32, 3, 32, 32) and x.dtype == torch.float32 for x, _ in a)
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, b))
    assert not torch.equal(a[0][1], first_epoch(1)[0][1])
    evaluation = list(Batches(d.test, d.mean, d.std, 8))
    assert [len(y) for _, y in evaluation] == [8, 8, 4]  # every test image, in order, unaugmented
    assert torch.equal(torch.cat([y for _, y in evaluation]), d.test.y)
