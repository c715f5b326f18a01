"""Benchmark of the poisoning step: throughput, peak RSS, and efficiency against its own passes.

For each data size (N and scale x N images) a fresh process runs MEM rounds on synthetic data and reports
  - throughput: sample-steps per second (PGD steps x samples + surrogate steps x batch size, per second),
  - peak RSS of that process (memory must not grow with the dataset: noise and images are read by row),
  - efficiency: measured time / time of the forward and backward passes the algorithm needs, each pass
    timed on its own on one batch (1.0 = no overhead besides the model itself).

    python bench/poison_bench.py --model tiny-vit --images 1000 --scale 8
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def worker(args) -> dict:
    import pandas as pd
    import torch
    from mem_round import captions, photos
    from passes import measure_passes, round_floor

    from unlearnable.clip.encoders import Encoder
    from unlearnable.clip.models import ModelSpec, create_model, image_resolution, tokenizer
    from unlearnable.clip.text import tokenize, trigger_vocabulary
    from unlearnable.data.image_store import open_image_store
    from unlearnable.data.rowfile import RowFile
    from unlearnable.protect.config import ProtectConfig
    from unlearnable.protect.engine import ProtectData, Protector
    from unlearnable.protect.units import Units

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    res = image_resolution(args.model)
    tmp = Path(tempfile.mkdtemp())
    store = RowFile.create(tmp / "images.npy", (args.images, res, res, 3), np.uint8)
    rng = np.random.default_rng(0)
    for s in range(0, args.images, 1024):
        n = min(1024, args.images - s)
        store.write(np.arange(s, s + n), photos(n, res, rng))
    store.close()
    rows = pd.DataFrame({"image_index": np.arange(args.images), "image_id": [f"i{i}" for i in range(args.images)],
                         "caption_id": np.arange(args.images)})
    tok = tokenizer(args.model)
    caps = tokenize(tok, captions(args.images, rng))
    cfg = ProtectConfig(rounds=args.rounds, surrogate_steps=args.surrogate_steps, hotflip_rounds=args.rounds,
                        token_num=args.token_num, candidates=args.candidates, batch_size=args.batch_size)
    vocab = trigger_vocabulary(tok)
    dev = torch.device(args.device)
    encoder = Encoder(create_model(ModelSpec(args.model)), dev)
    pr = Protector(cfg, encoder, ProtectData(open_image_store(tmp / "images.npy"), Units(rows, "pair"), caps, vocab),
                   tmp / "work", 0)
    t0 = time.perf_counter()
    pr.run()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    measured = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    B = min(args.batch_size, args.images)
    pixels = torch.from_numpy(open_image_store(tmp / "images.npy")[np.arange(B)])
    passes = measure_passes(encoder, pr.trainers[0], pixels, caps[:B],
                            vocab[torch.randint(len(vocab), (B, cfg.token_num))], vocab, cfg.candidates)
    t = {k: p["seconds"] for k, p in passes.items()}
    ideal = args.rounds * sum(round_floor(passes, cfg, args.images, B).values())
    sample_steps = args.rounds * (args.images * cfg.pgd_steps + cfg.surrogate_steps * B)
    return {"images": args.images, "model": args.model, "device": args.device, "rounds": args.rounds,
            "seconds": measured, "sample_steps_per_s": sample_steps / measured, "peak_rss_mb": rss,
            "ideal_seconds": ideal, "efficiency": measured / ideal, "pass_seconds": t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-vit")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--scale", type=int, default=8, help="also run at this many times the images")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--surrogate-steps", type=int, default=10)
    ap.add_argument("--token-num", type=int, default=3)
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    results = []
    for n in (args.images, args.images * args.scale):
        cmd = [sys.executable, __file__, "--worker", "--images", str(n)] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
            if k not in ("worker", "images", "scale", "out") and v is not None]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        results.append(r)
        print(f"{r['images']:>7} images: {r['seconds']:7.1f}s  {r['sample_steps_per_s']:8.0f} sample-steps/s  "
              f"peak RSS {r['peak_rss_mb']:7.0f} MB  efficiency {r['efficiency']:.2f}x of its passes "
              f"({r['ideal_seconds']:.1f}s)")
    growth = results[1]["peak_rss_mb"] / results[0]["peak_rss_mb"] - 1
    print(f"peak RSS at {args.scale}x the images: {growth * 100:+.1f}% (goal: within 10%)")
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": results, "rss_growth": growth}, indent=2))


if __name__ == "__main__":
    main()
