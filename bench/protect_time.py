"""Protection wall time of several methods, as ratios measured in one run (interleaved A B A B ...), on the
train split of a dataset the workflow already built.

    python bench/protect_time.py --methods mem3 strong_em --reps 2 --out bench/results/protect_time.json
    python bench/protect_time.py --grids config/grids/flickr8k-real.yaml --model small-rn-64 \
        --data /tmp/clean_curve --store store-64.npy --max-images 300 --methods em mem3 ...   # real photos

Methods are read from config/config.yaml merged with the grids given by --grids (default: noise-only and
defences). A ratio from one run on one machine is what this measures; absolute seconds depend on the load.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main() -> None:
    from unlearnable.clip.models import ModelSpec
    from unlearnable.data import manifest as mf
    from unlearnable.protect.config import method_config
    from unlearnable.protect.run import protect
    from unlearnable.provenance import versions

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", required=True)
    ap.add_argument("--grids", nargs="*", default=["config/grids/noise-only.yaml", "config/grids/defences.yaml"])
    ap.add_argument("--data", default="results/shapes/data", help="folder with manifest.parquet and images_32px.npy")
    ap.add_argument("--store", default="images_32px.npy", help="the image store in --data, at --model's resolution")
    ap.add_argument("--max-images", type=int, help="only the first N train images (all their caption rows)")
    ap.add_argument("--model", default="tiny-vit")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    methods = {}
    for f in ["config/config.yaml", *args.grids]:
        methods.update(yaml.safe_load((REPO / f).read_text()).get("methods", {}))
    df = mf.read_manifest(Path(args.data) / "manifest.parquet")
    train = df[df.split == "train"].reset_index(drop=True)
    if args.max_images:
        train = train[train["image_id"].isin(train["image_id"].drop_duplicates()[:args.max_images])]
        train = train.reset_index(drop=True)
    seconds = {m: [] for m in args.methods}
    for rep in range(args.reps):
        for m in args.methods:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                protect(train, Path(args.data) / args.store, ModelSpec(args.model), method_config(methods[m]),
                        rep, "cpu", Path(tmp) / "p")
                seconds[m].append(time.perf_counter() - t0)
            print(f"rep {rep} {m}: {seconds[m][-1]:.1f} s", flush=True)
    first = args.methods[0]
    ratios = {m: sum(seconds[m]) / sum(seconds[first]) for m in args.methods}
    for m in args.methods:
        print(f"{m:<16} {sum(seconds[m]) / args.reps:7.1f} s   {ratios[m]:.2f}x {first}")
    if args.out:
        Path(args.out).write_text(json.dumps({"methods": {m: methods[m] for m in args.methods}, "seconds": seconds,
                                              "ratio_to_first": ratios, "threads": args.threads,
                                              "pairs": len(train), "images": int(train["image_id"].nunique()),
                                              "model": args.model, "versions": versions()}, indent=1))


if __name__ == "__main__":
    main()
