"""Training speed of a victim on a quiet machine: steps per second of one short schedule, and what a full
schedule of `--epochs` x `--steps-per-epoch` costs at that rate. `bench/clean_curve.py` gives the recall; its own
timing is only as good as the machine's quiet while it ran.

    python bench/clean_speed.py --model small-rn-64 --out bench/results/clean_speed-small-rn-64.json
"""
from __future__ import annotations

import argparse
import platform
import time

import pandas as pd
import torch

from unlearnable.atomic import write_json
from unlearnable.clip.models import ModelSpec, create_model, image_resolution, tokenizer
from unlearnable.clip.text import tokenize
from unlearnable.clip.train import PairBatches, TrainConfig, train_clip
from unlearnable.data.image_store import open_image_store
from unlearnable.provenance import seed_everything


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/clean_curve", help="clean_curve.py's manifest and image store")
    ap.add_argument("--model", default="small-rn-64")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--steps-per-epoch", type=int, default=237, help="Flickr8k's 30,455 train pairs at batch 128")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    rows = pd.read_parquet(f"{args.work}/manifest.parquet")
    train = rows[rows["split"] == "train"].iloc[:args.batch * args.steps]
    store = open_image_store(f"{args.work}/store-{image_resolution(args.model)}.npy")
    tokens = tokenize(tokenizer(args.model), train["caption"].tolist())
    data = PairBatches(store, train["image_index"].to_numpy(), tokens)
    model = create_model(ModelSpec(args.model))
    t = time.time()
    train_clip(model, data, TrainConfig(epochs=1, batch_size=args.batch), torch.device("cpu"), seed_everything(0))
    rate = args.steps / (time.time() - t)
    minutes = args.epochs * args.steps_per_epoch / rate / 60
    print(f"{rate:.3f} steps/s; {args.epochs} epochs of {args.steps_per_epoch} steps: {minutes:.1f} min")
    write_json(args.out, {"model": args.model, "batch": args.batch, "threads": args.threads, "steps_per_s": rate,
                          "schedule_minutes": minutes, "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
                          "cpu": platform.processor() or platform.machine(), "torch": torch.__version__})


if __name__ == "__main__":
    main()
