"""The checks to run the first time a GPU is at hand, in one short script (about 2 minutes on one GPU).

    python bench/gpu_check.py --out bench/results/gpu_check.json        # make gpu-check

1. The device record every result carries (GPU name and capability, cuDNN, precision).
2. No host-device sync inside a step: a PGD pass, a HotFlip pass and training steps run under
   `torch.cuda.set_sync_debug_mode("warn")`, and the synchronising calls are counted for 1 and for 5 steps;
   the counts must be equal (a per-step sync makes them grow).
3. bf16 against fp32: the sign of PGD's pixel gradient (the step direction) agrees for this share of pixels,
   and a short protection made both ways.
4. Steps per second of training and of PGD at RN50's size, in bf16.

On the CPU (`--device cpu`) it runs the same code without the sync count, so the script itself is checked
wherever it is edited. Results go to --out as JSON; nothing is fetched from the network.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


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
    text = json.dumps(out, indent=1, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
