"""``lab bench``: it runs, and writes a JSON report and a table of sane values (no timing assertions: shared CPUs)."""
import json
import math

import torch

from lab.bench import bench_plan, project_table6
from lab.bench.fixtures import write_cifar10
from tests.conftest import lab


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_lab_bench_quick_writes_its_report_and_table(tmp_path):
    out = tmp_path / "out" / "bench.json"
    result = lab("bench", "--quick", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["mode"] == "quick" and report["machine"]["cores"] >= 1 and not report["skipped"]
    paths = {(r["path"], r["variant"]) for r in report["training"]}
    assert paths == {("dataloader", "32"), ("lab", "32"), ("floor", "32")}
    for r in report["training"]:
        assert positive(r["images_per_s"]) and positive(r["ms_per_iteration"])
        assert r["ms_per_iteration"] == r["batch_size"] / r["images_per_s"] * 1000
    (lab_row,) = [r for r in report["training"] if r["path"] == "lab"]
    assert positive(lab_row["vs_dataloader"]) and positive(lab_row["vs_floor"])
    assert [r["path"] for r in report["data"]][0].startswith("lab TrainStream") and all(positive(r["images_per_s"]) for r in report["data"])
    assert [(r["workers"], r["trials"]) for r in report["sweep"]] == [(1, 1), (2, 2)]
    assert all(positive(r["trials_per_hour"]) and positive(r["training_images_per_s"]) for r in report["sweep"])
    table = out.with_suffix(".md").read_text()
    assert "| ResNet-8 | lab train | 32 |" in table and "trials/hour" in table and table in result.stdout
    assert not list(tmp_path.glob("lab-bench-*")) and not (tmp_path / "runs").exists()  # its data and runs were temporary


def test_generated_cifar10_has_the_real_layout(tmp_path):
    from lab.config import DataConfig
    from lab.data import load_cifar

    write_cifar10(tmp_path, n_train=103, n_test=11)
    data = load_cifar(DataConfig(name="cifar10", data_dir=str(tmp_path), verify_md5=False, val_size=10))
    assert (len(data.train), len(data.val), len(data.test)) == (93, 10, 11)
    assert data.train.x.shape[1:] == (3, 32, 32) and data.train.x.dtype == torch.uint8


def test_gpu_check_plan_measures_every_variant_of_resnet_56_within_its_budget():
    plan = bench_plan("gpu-check", "cuda")
    assert plan.depths == (20, 56, 110) and plan.budget_s < 300
    assert set(plan.variants[56]) == {"32", "32+compile", "bf16-mixed", "bf16-mixed+compile"}
    assert all("32" in plan.variants[d] and "bf16-mixed+compile" in plan.variants[d] for d in plan.depths)
    assert plan.sweep_workers > 1 and plan.sweep_variant in plan.variants[plan.sweep_depth]


def test_table6_projection_fits_time_linear_in_depth():
    rows = [{"path": "lab", "depth": d, "images_per_s": 128 / (ms / 1000), "batch_size": 128} for d, ms in ((20, 3.0), (56, 6.0))]
    t = project_table6(rows, packing=2.0)
    ms = [3.0 + (d - 20) / 12 for d in (20, 32, 44, 56, 20, 32, 44, 56, 110)]  # 1 ms per 12 layers
    assert math.isclose(t["one_at_a_time_h"], sum(ms) * 64_000 / 1000 / 3600)
    assert math.isclose(t["packed_h"], t["one_at_a_time_h"] / 2)
