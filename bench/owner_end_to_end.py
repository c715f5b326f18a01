"""The owner's command end to end on real photos: what `unlearnable protect` with its defaults writes, read by
`unlearnable verify` with its defaults, under no defence and under the `scraper` chain, over seeds.

    python bench/owner_end_to_end.py ../shared/data/flickr8k-224 --photos 1000 --seeds 0 1 2 --threads 1 \
        --work /tmp/owner-e2e --out bench/results/owner_end_to_end-flickr8k.json

The grid measures each protection at the model's size inside the workflow; this measures the files an owner
publishes (every photo at its own size and format, triggers in the captions file) with the two commands a
README reader runs. `--photos` train photos of the paper's split (never its val or test photos) are drawn with
`--select-seed` and copied into an `images/` + `captions.csv` folder; each seed protects that folder with
`--seed` and verifies with `--seed` (its own held-out 20% and victim initialisation). Times are each command's
wall time; they are contended where something else shares the machine.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from unlearnable.atomic import write_json
from unlearnable.data.folders import ProtectionDir
from unlearnable.data.sources import LayoutConfig, read_dataset
from unlearnable.data.splits import SplitConfig, paper_lists
from unlearnable.provenance import cpu_model
from unlearnable.report.stats import retained

METRIC = "t2i_r10"


def owner_folder(source: Path, dest: Path, photos: int, seed: int) -> int:
    """`photos` train photos of the paper's Flickr8k split and all their captions, as an owner's folder."""
    rows, _ = read_dataset(source, LayoutConfig(kind="flickr8k"))
    held_out = {i for ids in paper_lists(SplitConfig(kind="paper", lists="flickr8k")).values() for i in ids}
    train = sorted(set(rows["image_id"]) - held_out)
    picked = set(np.random.default_rng(seed).choice(train, size=photos, replace=False))
    rows = rows[rows["image_id"].isin(picked)]
    (dest / "images").mkdir(parents=True)
    for path in rows["image_path"].unique():
        shutil.copyfile(source / path, dest / "images" / Path(path).name)
    with open(dest / "captions.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["image", "caption"])
        out.writerows((Path(p).name, c) for p, c in zip(rows["image_path"], rows["caption"]))
    return len(rows)


def run(args: list[str], log: Path) -> float:
    t0 = time.time()
    with open(log, "w") as f:
        subprocess.run([sys.executable, "-m", "unlearnable.cli", *args], stdout=f, stderr=subprocess.STDOUT,
                       check=True)
    return time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("flickr8k", type=Path, help="a Flickr8k copy in Kaggle's adityajn105/flickr8k layout")
    ap.add_argument("--photos", type=int, default=1000)
    ap.add_argument("--select-seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--defences", nargs="+", default=["none", "scraper"])
    ap.add_argument("--method", default=None, help="`protect --method` (default: the owner's default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, required=True, help="a new folder for the photos and every output")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    a.work.mkdir(parents=True)
    photos = a.work / "photos"
    captions = owner_folder(a.flickr8k, photos, a.photos, a.select_seed)
    runs = []
    for seed in a.seeds:
        out = a.work / f"out-s{seed}"
        seconds = run(["protect", str(photos), str(out), "--seed", str(seed), "--threads", str(a.threads),
                       *(["--method", a.method] if a.method else [])], a.work / f"protect-s{seed}.log")
        run_ = {"seed": seed, "protect_seconds": round(seconds, 1),
                "protect_min_per_1000_photos": round(seconds / 60 / a.photos * 1000, 2),
                "protection": ProtectionDir(out / "private").record().get("config")}
        for defence in a.defences:
            result = a.work / f"verify-s{seed}-{defence}.json"
            flags = [] if defence == "none" else ["--defence", defence]
            run_[f"verify_seconds_{defence}"] = round(run(
                ["verify", str(photos), str(out / "published"), "--seed", str(seed), "--threads", str(a.threads),
                 "--json", str(result), *flags], a.work / f"verify-s{seed}-{defence}.log"), 1)
            v = json.loads(result.read_text())
            clean, published, chance = v["clean"][METRIC], v["published"][METRIC], v["clean"][f"chance_{METRIC}"]
            run_[defence] = {"clean": clean, "published": published, "chance": chance,
                             "retained": round(retained(clean, published, chance), 4),
                             "test_images": v["test_images"], "train_images": v["train_images"]}
        runs.append(run_)
        print(json.dumps({k: run_[k] for k in run_ if k != "protection"}), flush=True)
    columns = {"protect_min_per_1000_photos": [r["protect_min_per_1000_photos"] for r in runs],
               **{f"{d}.retained": [r[d]["retained"] for r in runs] for d in a.defences}}
    summary = {key: {"mean": round(statistics.mean(values), 4),
                     "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None}
               for key, values in columns.items()}
    write_json(a.out, {"what": "unlearnable protect, then unlearnable verify, with their defaults",
                       "method": runs[0]["protection"]["method"], "method_flag": a.method, "metric": METRIC,
                       "photos": a.photos, "captions": captions, "select_seed": a.select_seed,
                       "threads": a.threads, "cpu": cpu_model(), "runs": runs,
                       "summary": summary})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
