"""The clean victim's curve on a real dataset: a CLIP trained from scratch, clean-test recall after every epoch.

Chooses the real-photo victim's schedule (resolution, width, epochs, batch) from measurement, not a guess.
Reads a dataset folder (the real Flickr8k by default) with the paper's split; the recall at epoch e is that of
an e-epoch prefix of the full cosine schedule, so the curve shows when more epochs stop paying.

    python bench/clean_curve.py --model small-rn-64 --epochs 10 --batch 128 --lr 1e-3 --seed 0 \\
        --out bench/results/clean_curve-small-rn-64-s0.json
"""
from __future__ import annotations

import argparse
import logging
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch

from unlearnable.atomic import write_json
from unlearnable.clip.evaluate import evaluate_retrieval
from unlearnable.clip.models import ModelSpec, create_model, image_resolution, tokenizer
from unlearnable.clip.text import tokenize
from unlearnable.clip.train import PairBatches, TrainConfig, train_clip
from unlearnable.data.image_store import build_image_store, open_image_store
from unlearnable.data.splits import SplitConfig
from unlearnable.provenance import seed_everything
from unlearnable.workflow.jobs import make_manifest

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k-224"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REAL), help="a Flickr8k copy (Kaggle layout)")
    ap.add_argument("--work", default="/tmp/clean_curve", help="manifest and image stores, reused between runs")
    ap.add_argument("--model", default="small-rn-64")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    manifest = work / "manifest.parquet"
    if not manifest.exists():
        make_manifest(args.data, SplitConfig(kind="paper", lists="flickr8k", require_all_listed=True), manifest,
                      work / "quality.json")
    import pandas as pd

    rows = pd.read_parquet(manifest)
    res = image_resolution(args.model)
    store_path = work / f"store-{res}.npy"
    if not store_path.exists():
        build_image_store(rows, args.data, store_path, res)
    store = open_image_store(store_path)
    spec = ModelSpec(args.model)
    tok = tokenizer(args.model)
    train, test = rows[rows["split"] == "train"], rows[rows["split"] == "test"]
    test_tokens = tokenize(tok, test["caption"].tolist())
    generator = seed_everything(args.seed)
    model = create_model(spec)
    data = PairBatches(store, train["image_index"].to_numpy(), tokenize(tok, train["caption"].tolist()))
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr, weight_decay=args.weight_decay)
    curve, t0, eval_s = [], time.time(), 0.0

    def on_epoch(epoch: int, row: dict) -> None:
        nonlocal eval_s
        t = time.time()
        metrics = evaluate_retrieval(model, store, test, test_tokens, "cpu")
        model.train()
        eval_s += time.time() - t
        curve.append({**row, **metrics, "train_s": time.time() - t0 - eval_s})
        logging.info("epoch %d: t2i R@10 %.2f, i2t R@10 %.2f, %.0f s of training", epoch,
                     metrics["t2i_r10"], metrics["i2t_r10"],
                     curve[-1]["train_s"])

    train_clip(model, data, cfg, torch.device("cpu"), generator, on_epoch=on_epoch)
    write_json(args.out, {"model": args.model, "resolution": res, "train": asdict(cfg), "seed": args.seed,
                          "threads": args.threads, "data": args.data,
                          "train_pairs": len(train), "test_images": int(test["image_id"].nunique()),
                          "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                          "curve": curve})


if __name__ == "__main__":
    main()
