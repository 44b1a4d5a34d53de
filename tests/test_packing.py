"""Packing a sweep's trials onto GPUs (issue 8): checked with a fake device count, since no GPU is needed to decide."""
import threading

import pytest

from lab.sweep import packing
from lab.config import make_config
from tests.conftest import TINY_RECIPE


def net(depth: int, style: str = "cifar"):
    return make_config(TINY_RECIPE, {"model.depth": depth, "model.style": style})


def test_small_nets_share_a_gpu_and_big_ones_have_one_each():
    assert [packing.trials_per_gpu(net(d)) for d in (20, 56, 110, 1202)] == [4, 4, 2, 1]
    assert packing.trials_per_gpu(net(34, "imagenet")) == 1


def test_default_workers_fill_every_gpu_with_the_sweeps_smallest_net_and_split_the_cores():
    table6 = [net(d) for d in (20, 32, 44, 56, 110)]
    assert packing.default_workers(table6, ["0", "1"]) == 8
    assert packing.default_workers([net(110)], ["0"]) == 2
    assert packing.default_workers(table6, [], cpus=2) == 2 and packing.default_workers(table6, [], cpus=64) == 8
    assert packing.threads_per_trial(8, cpus=16) == 2 and packing.threads_per_trial(4, cpus=2) == 1


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert packing.visible_gpus() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # a SLURM allocation, say: trials get these names
    assert packing.visible_gpus() == ["3", "5"]
    assert packing.trial_environment("5") == {"CUDA_VISIBLE_DEVICES": "5"} and packing.trial_environment(None) == {}


def test_trials_spread_across_gpus_and_wait_for_room():
    slots = packing.GpuSlots(["0", "1"])
    assert [slots.take(net(110)) for _ in range(2)] == ["0", "1"]  # two units each, one per GPU
    assert sorted(slots.take(net(20)) for _ in range(4)) == ["0", "0", "1", "1"]  # the rest of both GPUs
    assert slots.free == {"0": 0, "1": 0}
    taken = []
    waiter = threading.Thread(target=lambda: taken.append(slots.take(net(56))))
    waiter.start()
    waiter.join(timeout=0.5)
    assert waiter.is_alive() and not taken  # every GPU is full: the next trial waits
    slots.give_back("1", net(110))
    waiter.join(timeout=5)
    assert taken == ["1"] and slots.free == {"0": 0, "1": 1}
    stop = threading.Event()
    stop.set()
    assert slots.take(net(110), stop) is None  # a stopping sweep does not wait for room
    assert packing.GpuSlots([]).take(net(20)) is None  # no GPU: trials run on the CPU


@pytest.mark.parametrize("depth", [20, 110, 1202])
def test_a_gpu_never_takes_more_than_its_units(depth):
    slots, full = packing.GpuSlots(["0"]), threading.Event()
    full.set()  # take returns None instead of waiting once the GPU has no room
    n = 0
    while slots.take(net(depth), full) is not None:
        n += 1
    assert n == packing.trials_per_gpu(net(depth)) and slots.free["0"] >= 0


def test_the_sweep_hands_each_trial_process_its_gpu_and_threads(tmp_path, monkeypatch):
    """With two fake GPUs, the trial processes are started with CUDA_VISIBLE_DEVICES of the GPU they were given."""
    from lab import sweep as sweep_module
    from lab.sweep import Sweep, load_sweep
    from tests.conftest import write_project

    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.chdir(write_project(tmp_path, {"grid": {"train.seed": [0, 1, 2, 3]}}))
    name, spec, recipe = load_sweep("tiny")
    sweep = Sweep(name, spec, recipe, workers=8)
    assert sweep.running.threads_per_trial == max(1, (__import__("os").cpu_count() or 1) // 8)
    started = []

    class FakeProcess:  # records what the trial process would get, and "trains" at once
        exitcode = 0

        def __init__(self, target, args, name):
            started.append(args[5])  # trial_main(config, run, log, threads, coordinator, gpu, ...)

        def start(self):
            pass

        def is_alive(self):  # all four run at once
            return len(started) < 4

        def join(self, timeout):
            threading.Event().wait(0.05)

    # the trial's progress (lab.train.progress.Pulse): shared memory in a real context
    monkeypatch.setattr(sweep.running, "mp", type("Ctx", (), {"Process": FakeProcess,
                                                      "RawArray": staticmethod(lambda kind, n: [0.0] * n)}))
    sweep.queue()
    sweep.log_dir.mkdir(parents=True)
    claims = [sweep.claim() for _ in range(4)]
    runs = [threading.Thread(target=sweep.running.run, args=(claim, None, lambda claim: None)) for claim in claims]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=30)
    assert sorted(started) == ["0", "0", "1", "1"]  # spread across both GPUs, two tiny nets on each
    assert sweep.running.gpus.free == {"0": 4, "1": 4}  # every unit given back
    assert sweep_module.packing.trial_environment(started[0]) == {"CUDA_VISIBLE_DEVICES": started[0]}
