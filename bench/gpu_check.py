"""The checks to run the first time a GPU is at hand, in one command (under 10 minutes on one GPU).

    python bench/gpu_check.py --out bench/results/gpu_check.json        # make gpu-check

1. The device record every result carries (GPU name and capability, cuDNN, precision).
2. No host-device sync inside a step: a PGD pass, a HotFlip pass and training steps run under
   `torch.cuda.set_sync_debug_mode("warn")`, and the synchronising calls are counted for 1 and for 5 steps;
   the counts must be equal (a per-step sync makes them grow).
3. bf16 against fp32: the sign of PGD's pixel gradient (the step direction) agrees for this share of pixels.
4. Steps per second of training and of PGD at RN50's size, in bf16.
5. `bench/mem_round.py` on the device: seconds, MFU per pass and peak GPU memory of one MEM round.
6. The tiny grid `config/grids/gpu-check.yaml` run on the device (bf16) and on the CPU in fp32: every recall
   of every cell must agree within GRID_TOLERANCE points.

It exits 1 if any check fails (a sync inside a step, a failed run, a grid outside the tolerance). On the CPU
(`--device cpu`, what CI runs) the same code runs without the sync count, a small MEM round, and the grid
under bf16 autocast on the CPU standing in for the GPU. Results go to --out as JSON; nothing is fetched.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
GRID = REPO / "config" / "grids" / "gpu-check.yaml"
# recall points. The grid's test split has 60 images and 300 captions (one image is 1.7 points of i2t recall),
# and bf16 against fp32 moves a 4-epoch training: on the CPU (AMD EPYC) bf16 autocast put the 12 recalls of
# its two cells within 10.0 points of fp32's (largest: clean i2t R@5, 70.0 against 80.0)
GRID_TOLERANCE = 15.0
RECALLS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")


def _syncs(device, fn) -> int:
    """How many synchronising calls `fn` makes (CUDA's sync debug mode); -1 on the CPU, where none is a sync."""
    if device.type != "cuda":
        fn()
        return -1
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
            torch.cuda.synchronize()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def run_grid(workdir: Path, device: str, precision: str):
    """The tiny grid on one device, in a fresh folder; its summary (None if the run failed, with its log tail)."""
    import pandas as pd
    import yaml

    cfg = yaml.safe_load(GRID.read_text())
    cfg.update(device=device, precision=precision, results=str(workdir / "results"),
               mlflow={"tracking_uri": f"sqlite:///{workdir}/results/mlflow.db", "experiment": "gpu-check"})
    workdir.mkdir(parents=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "-d",
           str(workdir), "--configfile", str(workdir / "config.yaml"), "--cores", "2"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return None, res.stderr[-2000:]
    return pd.read_parquet(workdir / "results" / "summary.parquet"), ""


def grid_check(device: str) -> dict:
    """The tiny grid on `device` (bf16: autocast, on the CPU too) against the CPU in fp32."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        ref, ref_err = run_grid(Path(tmp) / "cpu-fp32", "cpu", "fp32")
        run, run_err = run_grid(Path(tmp) / f"{device}-bf16", device, "bf16")
    if ref is None or run is None:
        return {"ok": False, "error": ref_err or run_err}
    keys = ["method", "seed"]
    both = ref.set_index(keys)[list(RECALLS)].join(run.set_index(keys)[list(RECALLS)], rsuffix="_device")
    diffs = {f"{m}/seed{s}": {k: round(float(row[f"{k}_device"] - row[k]), 2) for k in RECALLS}
             for (m, s), row in both.iterrows()}
    worst = max(abs(v) for d in diffs.values() for v in d.values())
    return {"ok": bool(worst <= GRID_TOLERANCE and set(run["precision"]) == {"bf16"}
                       and set(run["device"]) == {device.split(":")[0]}),
            "tolerance_points": GRID_TOLERANCE, "max_abs_diff_points": worst, "diff_device_minus_cpu_fp32": diffs,
            "cpu_fp32": ref.set_index(keys)[list(RECALLS)].round(2).reset_index().to_dict("records"),
            "device": run.set_index(keys)[list(RECALLS)].round(2).reset_index().to_dict("records")}


def mem_round_check(device: str, small: bool) -> dict:
    """One MEM round on the device (bench/mem_round.py): seconds, MFU per pass, peak GPU memory."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        out = Path(tmp) / "mem_round.json"
        extra = ["--model", "tiny-vit-224", "--images", "16", "--surrogate-steps", "1", "--candidates", "2",
                 "--pgd-steps", "2"] if small else []
        res = subprocess.run([sys.executable, str(REPO / "bench" / "mem_round.py"), "--device", device,
                              "--out", str(out), *extra], capture_output=True, text=True)
        if res.returncode != 0:
            return {"ok": False, "error": res.stderr[-2000:]}
        r = json.loads(out.read_text())
    return {"ok": True, "model": r["model"], "round_seconds": r["round_seconds"], "gpu_peak_mb": r["gpu_peak_mb"],
            "mfu": {k: round(p["mfu"], 3) for k, p in r["passes"].items()}}


def main() -> None:
    from unlearnable.clip.encoders import Encoder
    from unlearnable.clip.models import ModelSpec, create_model, tokenizer
    from unlearnable.clip.text import tokenize, trigger_vocabulary
    from unlearnable.clip.train import ContrastiveTrainer, make_optimizer
    from unlearnable.protect.hotflip import hotflip
    from unlearnable.protect.pgd import error_minimizing_pgd
    from unlearnable.provenance import resolve_device, versions

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="RN50")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out")
    ap.add_argument("--skip-grid", action="store_true", help="leave out the tiny grid (check 6)")
    ap.add_argument("--skip-mem-round", action="store_true", help="leave out the MEM round (check 5)")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    torch.manual_seed(0)
    model = create_model(ModelSpec(args.model))
    res = model.visual.image_size
    res = res[0] if isinstance(res, (tuple, list)) else res
    tok = tokenizer(args.model)
    caps = tokenize(tok, [f"a photo of thing number {i} on a table" for i in range(args.batch)])
    vocab = trigger_vocabulary(tok)
    x = torch.randint(0, 256, (args.batch, 3, res, res), generator=torch.Generator().manual_seed(1)).float().to(dev)
    out: dict = {"versions": versions(dev, "bf16"), "model": args.model, "batch": args.batch}

    enc = Encoder(model, dev, "bf16")
    enc.bound_text_length(caps, 3)
    scale = torch.tensor(30.0, device=dev)
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        txt = enc.text(caps.to(dev))
    img = F.normalize(torch.randn(args.batch, txt.shape[1], device=dev), dim=-1)
    trig = vocab[torch.arange(args.batch * 3).view(args.batch, 3) % len(vocab)].to(dev)
    out["syncs"] = {
        "pgd_1_step": _syncs(dev, lambda: error_minimizing_pgd(enc, x, x.clone(), lambda t: txt, 8, 1, 1, scale)),
        "pgd_5_steps": _syncs(dev, lambda: error_minimizing_pgd(enc, x, x.clone(), lambda t: txt, 8, 1, 5, scale)),
        "hotflip_k1": _syncs(dev, lambda: hotflip(enc, img, caps.to(dev), trig[:, :1], vocab.to(dev), 8, scale)),
        "hotflip_k3": _syncs(dev, lambda: hotflip(enc, img, caps.to(dev), trig, vocab.to(dev), 8, scale)),
    }

    # bf16 vs fp32: PGD's step direction
    signs = {}
    for precision in ("bf16", "fp32"):
        e = Encoder(model, dev, precision)
        xa = x.clone().requires_grad_(True)
        loss = (e.image(xa) * txt).sum()
        signs[precision], = torch.autograd.grad(loss, xa)
    out["pgd_sign_agreement_bf16_vs_fp32"] = float((signs["bf16"].sign() == signs["fp32"].sign()).float().mean())

    for p in model.parameters():
        p.requires_grad_(True)
    trainer = ContrastiveTrainer(enc, make_optimizer(model, 1e-4, 0.2, (0.9, 0.98), 1e-6))
    images = x.to(torch.uint8).permute(0, 2, 3, 1).cpu()
    tokens = enc.trim(caps)
    out["syncs"]["train_1_step"] = _syncs(dev, lambda: trainer.step(images, tokens))
    out["syncs"]["train_5_steps"] = _syncs(dev, lambda: [trainer.step(images, tokens) for _ in range(5)])
    for name, fn in (("train", lambda: trainer.step(images, tokens)),
                     ("pgd_step", lambda: error_minimizing_pgd(enc, x, x.clone(), lambda t: txt, 8, 1, 1, scale))):
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0, n = time.perf_counter(), 10
        for _ in range(n):
            fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        out[f"{name}_per_s"] = n / (time.perf_counter() - t0)
    per_step = {k: out["syncs"][f"{k}_5_steps" if k != "hotflip" else "hotflip_k3"] -
                out["syncs"][f"{k}_1_step" if k != "hotflip" else "hotflip_k1"] for k in ("pgd", "train", "hotflip")}
    out["per_step_syncs_found"] = {k: v for k, v in per_step.items() if v > 0} if dev.type == "cuda" else "cpu"
    failures = [f"a host sync inside a step: {k}" for k in (out["per_step_syncs_found"] if dev.type == "cuda" else {})]
    if not args.skip_mem_round:
        out["mem_round"] = mem_round_check(str(dev), small=dev.type != "cuda")
        failures += [] if out["mem_round"]["ok"] else ["mem_round.py failed"]
    if not args.skip_grid:
        out["grid"] = grid_check(str(dev))
        failures += [] if out["grid"]["ok"] else [f"the tiny grid on {dev} is not within {GRID_TOLERANCE} points "
                                                  f"of the CPU's fp32 run (or failed)"]
    out["failures"] = failures
    text = json.dumps(out, indent=1, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if failures:
        sys.exit("gpu check FAILED: " + "; ".join(failures))
    print("gpu check passed")


if __name__ == "__main__":
    main()
