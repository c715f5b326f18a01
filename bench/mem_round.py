"""One MEM round, phase by phase, against the floor of its passes; throughput and FLOP utilisation.

The default is the paper's per-pair setting at bench size: 80 generated photos at 224 px with one 10-15-word
caption each, RN50 from random init, per-pair units, batch 16, one round of 4 surrogate steps, a HotFlip pass
with 16 candidates, 8 PGD steps, k = 3, 2 threads. The same command runs unchanged on a GPU (`--device cuda`).

    python bench/mem_round.py --out bench/results/mem_round-RN50-cpu.json         # ~3 min on 2 CPU cores
    python bench/mem_round.py --model tiny-vit --images 24 --batch-size 8          # seconds (CI)

It prints the round's time per phase (surrogate; batch: reads and the image forward that HotFlip and PGD's
first step share; HotFlip; the rest of PGD; other: noise writes and the commit), its peak RSS, the floor
(each pass timed alone on one batch, times how often the round runs it: PGD's floor counts every step's
forward, so it compares with batch + pgd), and per pass: sample-steps/s, FLOPs per sample and model-FLOP
utilisation. `unlearnable cost` reads the JSON it writes.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

WORDS = ("a man woman child dog cat two three people group young old red blue green white black small large "
         "sitting standing walking running riding holding playing eating looking street beach park field table "
         "room kitchen water snow grass tree building car bus train bike horse ball frisbee plate pizza with "
         "on in of near next to the an and at while under front").split()


def photos(n: int, res: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random colour fields with texture: photo-like statistics (content does not change cost)."""
    import torch
    import torch.nn.functional as F

    low = torch.from_numpy(rng.uniform(0, 255, (n, 3, 6, 6)).astype(np.float32))
    img = F.interpolate(low, size=(res, res), mode="bicubic", align_corners=False)
    img = img + torch.from_numpy(rng.normal(0, 12, (n, 3, res, res)).astype(np.float32))
    return img.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def captions(n: int, rng: np.random.Generator) -> list[str]:
    return [" ".join(rng.choice(WORDS, rng.integers(10, 16))) for _ in range(n)]


def run(args) -> dict:
    import pandas as pd
    import torch
    from passes import measure_passes, peak_flops, round_floor, sync, utilisation

    from unlearnable.clip.encoders import Encoder
    from unlearnable.clip.models import ModelSpec, create_model, image_resolution, tokenizer
    from unlearnable.clip.text import tokenize, trigger_vocabulary
    from unlearnable.data.image_store import open_image_store
    from unlearnable.data.rowfile import RowFile
    from unlearnable.protect.config import ProtectConfig
    from unlearnable.protect.engine import ProtectData, Protector
    from unlearnable.protect.units import Units
    from unlearnable.provenance import resolve_device, versions

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = resolve_device(args.device)
    rng = np.random.default_rng(0)
    res = image_resolution(args.model)
    tmp = Path(tempfile.mkdtemp(prefix="mem_round."))
    store = RowFile.create(tmp / "images.npy", (args.images, res, res, 3), np.uint8)
    store.write(np.arange(args.images), photos(args.images, res, rng))
    store.close()
    rows = pd.DataFrame({"image_index": np.arange(args.images), "image_id": [f"i{i}" for i in range(args.images)],
                         "caption_id": np.arange(args.images)})
    tok = tokenizer(args.model)
    caps = tokenize(tok, captions(args.images, rng))
    vocab = trigger_vocabulary(tok)
    cfg = ProtectConfig(method="mem", granularity="pair", rounds=1, surrogate_steps=args.surrogate_steps,
                        hotflip_rounds=1, token_num=args.token_num, candidates=args.candidates,
                        pgd_steps=args.pgd_steps, batch_size=args.batch_size)
    encoder = Encoder(create_model(ModelSpec(args.model)), dev)
    pr = Protector(cfg, encoder, ProtectData(open_image_store(tmp / "images.npy"), Units(rows, "pair"), caps, vocab),
                   tmp / "work", 0)

    phases = {"surrogate": 0.0, "batch": 0.0, "hotflip": 0.0, "pgd": 0.0}
    rss_after = {}  # peak RSS (MiB) reached by the end of each phase's first call: which phase sets it

    def clocked(name, fn):
        def wrapper(*a, **kw):
            sync(dev)
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                sync(dev)
                phases[name] += time.perf_counter() - t
                rss_after.setdefault(name, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return wrapper

    pr._train_surrogate = clocked("surrogate", pr._train_surrogate)
    pr._batch = clocked("batch", pr._batch)  # reads + the image forward HotFlip and PGD's first step share
    pr._flip = clocked("hotflip", pr._flip)
    pr._pgd = clocked("pgd", pr._pgd)
    t0 = time.perf_counter()
    pr.run()
    sync(dev)
    total = time.perf_counter() - t0
    phases["other"] = total - sum(phases.values())
    rss_round = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    B = min(args.batch_size, args.images)
    idx = np.arange(B)
    passes = measure_passes(encoder, pr.trainers[0], torch.from_numpy(open_image_store(tmp / "images.npy")[idx]),
                            caps[:B].to(dev), vocab[torch.randint(len(vocab), (B, cfg.token_num))].to(dev),
                            vocab.to(dev), cfg.candidates, reps=args.reps)
    peak, peak_source = peak_flops(dev)
    passes = utilisation(passes, B, peak)
    floor = round_floor(passes, cfg, args.images, B)
    return {"model": args.model, "resolution": res, "device": str(dev), "device_kind": dev.type,
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else versions().get("cpu", ""),
            "threads": args.threads, "images": args.images, "batch_size": B, "config": cfg.__dict__,
            "round_seconds": total, "phases": phases, "floor": floor, "floor_seconds": sum(floor.values()),
            "efficiency": total / sum(floor.values()), "peak_rss_mb": rss_round, "peak_rss_mb_after": rss_after,
            "gpu_peak_mb": torch.cuda.max_memory_allocated(dev) / 2 ** 20 if dev.type == "cuda" else None,
            "peak_flops": peak, "peak_source": peak_source, "passes": passes, "versions": versions()}


def report(r: dict) -> str:
    lines = [f"{r['model']} at {r['resolution']} px on {r['device_name'] or r['device']} ({r['threads']} threads): "
             f"one MEM round over {r['images']} pairs, batch {r['batch_size']}",
             f"  round {r['round_seconds']:.1f} s, peak RSS {r['peak_rss_mb'] / 1024:.2f} GiB"
             + (f", GPU peak {r['gpu_peak_mb'] / 1024:.2f} GiB" if r["gpu_peak_mb"] else "")]
    for name, sec in r["phases"].items():
        fl = r["floor"].get(name)
        lines.append(f"    {name:<10} {sec:7.1f} s" + (f"   floor {fl:7.1f} s" if fl is not None else ""))
    lines.append(f"  floor {r['floor_seconds']:.1f} s: the round takes {r['efficiency']:.2f}x the time of its passes")
    lines.append(f"  per pass (peak {r['peak_flops'] / 1e12:.3f} TFLOP/s, {r['peak_source']}):")
    for name, p in r["passes"].items():
        lines.append(f"    {name:<9} {p['sample_steps_per_s']:9.1f} sample-steps/s  "
                     f"{p['flops_per_sample'] / 1e9:8.2f} GFLOP/sample  MFU {100 * p['mfu']:5.1f}%")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="RN50")
    ap.add_argument("--images", type=int, default=80)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--surrogate-steps", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--pgd-steps", type=int, default=8)
    ap.add_argument("--token-num", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2, help="repetitions when timing a pass alone")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    r = run(args)
    print(report(r))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(r, indent=2, default=str))


if __name__ == "__main__":
    main()
