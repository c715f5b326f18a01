"""Benches that CI runs at tiny size, and the cost command over the shipped paper grid."""
import json
import subprocess
import sys

import pytest
from conftest import REPO

from unlearnable.workflow.cost import KNOWN_SIZES, cost, estimate, merged_config, sample_passes


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    res = subprocess.run([sys.executable, str(REPO / "bench" / "mem_round.py"), "--model", "tiny-vit", "--images",
                          "24", "--batch-size", "8", "--surrogate-steps", "2", "--candidates", "4", "--pgd-steps",
                          "2", "--threads", "1", "--reps", "1", "--device", "cpu", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(out.read_text()), res.stdout


def test_round_bench_reports_phases_floor_and_utilisation(tiny_bench):
    r, printed = tiny_bench
    assert sum(r["phases"].values()) == pytest.approx(r["round_seconds"])
    assert set(r["floor"]) == {"surrogate", "hotflip", "pgd"} and r["floor_seconds"] > 0
    assert set(r["phases"]) == {"surrogate", "batch", "hotflip", "pgd", "other"}
    for name in ("train", "pgd_step", "hotflip", "encode"):
        p = r["passes"][name]
        assert p["flops_per_sample"] > 0 and p["sample_steps_per_s"] > 0
        assert p["mfu"] == pytest.approx(p["flops"] / p["seconds"] / r["peak_flops"])
    assert "sample-steps/s" in printed and "MFU" in printed


def _bench_file(tmp_path, model="RN50", device="cpu"):
    """A bench result with round numbers, so the expected cost can be worked out by hand."""
    passes = {k: {"per_sample_seconds": s, "flops_per_sample": 1e9 * s}
              for k, s in {"train": 0.5, "pgd_step": 0.2, "hotflip": 0.6, "encode": 0.1}.items()}
    path = tmp_path / f"{model}-{device}.json"
    path.write_text(json.dumps({"model": model, "device_kind": device, "device_name": "test", "passes": passes,
                                "config": {"token_num": 3, "candidates": 16}}))
    return path


def test_paper_grid_cost_counts_every_sample_pass_once(tmp_path):
    config = merged_config(REPO / "config/grids/paper.yaml")
    from unlearnable.workflow.cost import Bench

    est = estimate(config, [Bench.load(_bench_file(tmp_path))])
    pairs = {d: KNOWN_SIZES[d][0] for d in ("flickr8k", "flickr30k", "mscoco")}
    seeds = 3
    # the paper's schedules, worked out from paper.yaml: mem3/mem5 20 rounds x (200 steps x 128 + 8 PGD steps per
    # pair) with 5 HotFlip rounds (mem5's pass does 5/3 the work); em 5 rounds x (50 x 128 + 8 per pair)
    protect = 0.0
    for n in pairs.values():
        for k in (3, 5):
            protect += 20 * 200 * 128 * 0.5 + 20 * 8 * n * 0.2 + 5 * n * 0.6 * k / 3
        protect += 5 * 50 * 128 * 0.5 + 5 * 8 * n * 0.2
    assert est["stages"]["protect"]["device_seconds"] == pytest.approx(seeds * protect)
    assert est["stages"]["protect"]["count"] == 3 * 3 * seeds
    train = sum(32 * (n // 128 * 128) * 0.5 for n in pairs.values())
    assert est["stages"]["train clean"]["device_seconds"] == pytest.approx(seeds * train)
    assert est["stages"]["retrain"]["device_seconds"] == pytest.approx(3 * seeds * train)  # em, mem3, mem5
    assert est["stages"]["evaluate"]["count"] == 4 * 3 * seeds


def test_cost_says_when_gpu_hours_are_estimates(tmp_path, tiny_bench):
    text = cost(str(REPO / "config/grids/paper.yaml"), [str(_bench_file(tmp_path))])
    assert "ESTIMATE from FLOP counts" in text and "Only CPU figures exist" in text
    measured = cost(str(REPO / "config/grids/paper.yaml"), [str(_bench_file(tmp_path, device="cuda"))])
    assert "ESTIMATE" not in measured and "H100-hours" not in measured
    bench = tmp_path / "tiny.json"
    bench.write_text(json.dumps(tiny_bench[0]))
    res = subprocess.run([sys.executable, "-m", "unlearnable.cli", "cost", str(REPO / "config/config.yaml"),
                          "--bench", str(bench)], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "protect" in res.stdout and "total" in res.stdout
    res = subprocess.run([sys.executable, "-m", "unlearnable.cli", "cost", str(REPO / "config/grids/paper.yaml"),
                          "--bench", str(bench)], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "no bench for model 'RN50'" in res.stderr


def test_sample_passes_share_work_like_the_dag():
    config = merged_config(REPO / "config/grids/paper.yaml")
    jobs = sample_passes(config)
    assert sum(j["stage"] == "train clean" for j in jobs) == 3 * 3  # per dataset and seed, not per method
