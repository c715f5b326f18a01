"""The passes a MEM round is made of, each timed alone on one batch, with its FLOPs and utilisation.

Shared by the benches: a round's floor is the sum of these passes times how often the round runs them.
Peak FLOP/s: a GPU's spec sheet (bf16 dense) where the device is known, otherwise measured here with a large
matmul in the precision the passes run in; the JSON says which.
"""
from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode

# bf16 dense tensor-core peaks from the vendors' spec sheets (FLOP/s), matched against the device name
GPU_PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12,
             "V100": 125e12, "T4": 65e12}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_flops(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in GPU_PEAKS.items():
            if key in name:
                return peak, f"spec sheet, bf16 dense ({name})"
    n = 2048 if device.type == "cpu" else 8192
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    t, reps = time.perf_counter(), 5
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t), f"measured: {n}x{n} {dtype} matmul on {device.type}"


def timed(fn, device: torch.device, reps: int = 3) -> float:
    fn()  # warm-up (allocator, kernel selection)
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - t) / reps


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def measure_passes(encoder, trainer, pixels, captions, trigger, vocab, candidates: int, reps: int = 3) -> dict:
    """Seconds and FLOPs of one batch of: a surrogate training step, a PGD step (text forward + image
    forward and input gradient), a HotFlip pass, and clean-test encoding (image and text forwards)."""
    from unlearnable.clip.text import insert_trigger
    from unlearnable.protect.engine import frozen
    from unlearnable.protect.hotflip import hotflip
    from unlearnable.protect.loss import clip_loss

    dev, model = encoder.device, encoder.model
    texts = insert_trigger(captions, trigger)
    x = encoder.pixels(pixels)
    passes = {"train": lambda: trainer.step(pixels, texts)}
    scale = model.logit_scale.exp().detach()

    def pgd_step():
        with torch.no_grad():
            txt = encoder.text(texts)
        xa = x.clone().requires_grad_(True)
        torch.autograd.grad(clip_loss(encoder.image(xa), txt, scale), xa)

    def encode():
        with torch.no_grad():
            encoder.image(pixels)
            encoder.text(captions)

    out = {}
    out["train"] = {"seconds": timed(passes["train"], dev, reps), "flops": flops(passes["train"])}
    with frozen(model):
        with torch.no_grad():
            img = encoder.image(x)
        flip = lambda: hotflip(encoder, img, captions, trigger, vocab, candidates, scale)  # noqa: E731
        for name, fn, r in (("pgd_step", pgd_step, reps), ("hotflip", flip, 1), ("encode", encode, reps)):
            out[name] = {"seconds": timed(fn, dev, r), "flops": flops(fn)}
    return out


def round_floor(passes: dict, cfg, images: int, batch: int) -> dict:
    """A protection round's floor by phase: each pass's time on one batch times how often the round runs it
    (PGD's counts every step's image forward, HotFlip one pass per batch of units)."""
    batches = -(-images // batch)
    return {"surrogate": cfg.surrogate_steps * passes["train"]["seconds"],
            "hotflip": batches * passes["hotflip"]["seconds"],
            "pgd": batches * cfg.pgd_steps * passes["pgd_step"]["seconds"]}


def utilisation(passes: dict, batch: int, peak: float) -> dict:
    """Per pass: sample-steps/s, FLOPs per sample, achieved FLOP/s and model-FLOP utilisation."""
    return {name: {**p, "per_sample_seconds": p["seconds"] / batch, "sample_steps_per_s": batch / p["seconds"],
                   "flops_per_sample": p["flops"] / batch, "flop_per_s": p["flops"] / p["seconds"],
                   "mfu": p["flops"] / p["seconds"] / peak}
            for name, p in passes.items()}
