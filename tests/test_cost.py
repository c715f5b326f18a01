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
    # disk: MSCOCO's per-pair noise in place, the undo log's limit and the surrogate's checkpoint committed twice
    from unlearnable.workflow.cost import parameter_count

    noise = 566747 * 224 * 224 * 3
    ckpt = 3 * 4 * parameter_count("RN50")
    assert est["stages"]["protect"]["disk_peak"] == noise + 256 * 2 ** 20 + 2 * ckpt
    assert est["stages"]["train clean"]["disk_peak"] == 2 * ckpt
    assert est["stages"]["publish"]["disk_peak"] == 2 * noise  # a store of every pair and its PNGs


def test_cost_says_when_gpu_hours_are_estimates(tmp_path, tiny_bench):
    text = cost(str(REPO / "config/grids/paper.yaml"), [str(_bench_file(tmp_path))])
    assert "ESTIMATE from FLOP counts" in text and "Only CPU figures exist" in text
    protect = next(line for line in text.splitlines() if line.startswith("protect"))
    assert "peak GB/job" in text and protect.split()[4] == "88.0"  # MSCOCO's 85.3 GB of noise, never twice
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


def test_cost_into_a_closed_pipe_exits_quietly(tmp_path, tiny_bench):
    """`unlearnable cost ... | head` (or `grep -q`) closes the pipe early: no traceback, SIGPIPE's exit status."""
    bench = tmp_path / "tiny.json"
    bench.write_text(json.dumps(tiny_bench[0]))
    proc = subprocess.Popen([sys.executable, "-m", "unlearnable.cli", "cost", str(REPO / "config/config.yaml"),
                             "--bench", str(bench)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    proc.stdout.close()  # the reader is gone before the child writes a byte (its imports alone take seconds)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err, err


def test_sample_passes_share_work_like_the_dag():
    config = merged_config(REPO / "config/grids/paper.yaml")
    jobs = sample_passes(config)
    assert sum(j["stage"] == "train clean" for j in jobs) == 3 * 3  # per dataset and seed, not per method


def test_gpu_check_cpu_half_runs_every_check_and_compares_the_grid(tmp_path):
    """`make gpu-check`'s CPU half: the kernel checks, a small MEM round, and the tiny grid under bf16 autocast
    against the CPU's fp32 run, within the stated tolerance; it exits 0 and says so."""
    out = tmp_path / "gpu_check.json"
    res = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--device", "cpu", "--model",
                          "tiny-rn", "--batch", "8", "--out", str(out)], capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["failures"] == [] and "gpu check passed" in res.stdout
    assert r["versions"]["precision"] == "bf16" and 0.5 < r["pgd_sign_agreement_bf16_vs_fp32"] <= 1
    assert r["mem_round"]["ok"] and set(r["mem_round"]["mfu"]) == {"train", "pgd_step", "hotflip", "encode"}
    grid = r["grid"]
    assert grid["ok"] and set(grid["diff_device_minus_cpu_fp32"]) == {"clean/seed0", "mem3/seed0"}
    assert grid["max_abs_diff_points"] <= grid["tolerance_points"]


def test_gpu_check_fails_a_grid_outside_its_tolerance(monkeypatch, tmp_path):
    """The comparison is real: a device whose recalls stray past the tolerance (or that ran in the wrong
    precision) fails the check."""
    import pandas as pd

    sys.path.insert(0, str(REPO / "bench"))
    import gpu_check

    def frame(shift, precision):
        rows = [{"method": m, "seed": 0, "device": "cpu", "precision": precision,
                 **{k: 40.0 + (shift if m == "mem3" and k == "t2i_r1" else 0) for k in gpu_check.RECALLS}}
                for m in ("clean", "mem3")]
        return pd.DataFrame(rows)

    for shift, precision, ok in ((gpu_check.GRID_TOLERANCE, "bf16", True), (gpu_check.GRID_TOLERANCE + 0.5, "bf16",
                                                                             False), (0.0, "fp32", False)):
        monkeypatch.setattr(gpu_check, "run_grid", lambda workdir, device, p, s=shift, q=precision: (
            frame(0.0, "fp32") if p == "fp32" else frame(s, q), ""))
        result = gpu_check.grid_check("cpu")
        assert result["ok"] is ok, (shift, precision)


def test_two_victims_of_one_architecture_are_two_victims_each_with_its_own_schedule():
    """flickr8k-real.yaml trains a victim from scratch and a fine-tuned one, both small-rn-64: each is its own
    job (they were counted once, by architecture), and the fine-tuned one takes its own 1 epoch."""
    config = merged_config(REPO / "config/grids/flickr8k-real.yaml")
    passes = sample_passes(config, {"flickr8k_owner": 7500, "flickr8k_pretrain": 15230})
    retrains = [j["passes"]["train"] for j in passes if j["stage"] == "retrain"]
    assert len(retrains) == 42 + 42  # as the plan: tests/test_grid.py
    steps = 7500 // 128 * 128
    assert sorted(set(retrains)) == [1 * steps, 4 * steps]
    assert retrains.count(1 * steps) == retrains.count(4 * steps) == 42
