"""Rehearse the paper's DAG at Flickr8k scale on this machine: per-stage wall time, peak RSS and peak disk.

Runs `config/grids/rehearsal.yaml` at full size (8,091 images) and at 1/8 size, each into its own new
results folder, with Snakemake on `--cores`. Every job logs its wall time and peak RSS (`usage:` line,
written by the job runner); the results and resources folders are sampled for disk use every few seconds.

    python bench/rehearsal.py --out bench/results/rehearsal.json      # both sizes, ~40 min on 2 cores
    python bench/rehearsal.py --sizes 8 --tag ci                        # 1/8 only

It prints, per stage, time and peak RSS at each size and the RSS growth from 1/8 to full, then the peak and
final disk use. Output folders must not exist (the bench deletes nothing).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
USAGE = re.compile(r"usage: wall ([\d.]+) s, peak RSS (\d+) MiB")
STAGES = [("generate", r"/generate\.log$"), ("manifest", r"/manifest\.log$"),
          ("image_store", r"/image_store_\d+px\.log$"), ("train_clean", r"/clean/.*/train\.log$"),
          ("protect", r"/protect/"), ("publish", r"/publish/"), ("retrain", r"/retrain/.*\.log$"),
          ("tracking_store", r"/tracking_store\.log$"),
          ("summary", r"/summary\.log$"), ("report", r"/report\.log$")]


def stage_of(log: Path) -> str:
    """The stage of a job's log; training stages include the evaluation their job ends with."""
    text = str(log)
    return next((name for name, pattern in STAGES if re.search(pattern, text)), log.name)


def disk_bytes(*folders: Path) -> int:
    total = 0
    for folder in folders:
        for dirpath, _dirs, files in os.walk(folder):
            for f in files:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
                except FileNotFoundError:  # renamed or removed while walking
                    pass
    return total


def rehearse(fraction: int, tag: str, cores: int, interval: float) -> dict:
    base = yaml.safe_load((ROOT / "config/grids/rehearsal.yaml").read_text())
    name = f"rehearsal-{tag}-1of{fraction}" if fraction > 1 else f"rehearsal-{tag}"
    results, resources = ROOT / "results" / name, ROOT / "resources" / name
    for folder in (results, resources):
        if folder.exists():
            sys.exit(f"error: {folder} exists; remove it or choose another --tag")
    src = base["datasets"]["flickr8k-standin"]["source"]
    overlay = {"results": str(results.relative_to(ROOT)), "resources": str(resources.relative_to(ROOT)),
               "mlflow": {"tracking_uri": f"sqlite:///{results.relative_to(ROOT)}/mlflow.db"},
               "datasets": {"flickr8k-standin": {"source": {**src, "n_images": -(-src["n_images"] // fraction)},
                                                 # a fraction holds that fraction of the listed val/test names
                                                 "split": {"require_all_listed": fraction == 1}}}}
    results.mkdir(parents=True)
    overlay_file = results / "rehearsal-overlay.yaml"
    overlay_file.write_text(yaml.safe_dump(overlay))
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], disk_bytes(results, resources))
            stop.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.time()
    cmd = [str(Path(sys.executable).parent / "snakemake"), "--cores", str(cores), "--configfile",
           "config/grids/rehearsal.yaml", str(overlay_file)]
    with open(results / "rehearsal-snakemake.log", "w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}).returncode
    wall = time.time() - t0
    stop.set()
    sampler.join()
    final = disk_bytes(results, resources)
    peak[0] = max(peak[0], final)
    if rc != 0:
        sys.exit(f"error: the rehearsal failed (exit {rc}); see {results / 'rehearsal-snakemake.log'}")
    stages: dict[str, dict] = {}
    for log_file in sorted((results / "logs").rglob("*.log")):
        m = USAGE.search(log_file.read_text(errors="replace"))
        if m:
            s = stages.setdefault(stage_of(log_file), {"jobs": 0, "seconds": 0.0, "peak_rss_mib": 0})
            s["jobs"] += 1
            s["seconds"] += float(m.group(1))
            s["peak_rss_mib"] = max(s["peak_rss_mib"], int(m.group(2)))
    return {"fraction": fraction, "images": overlay["datasets"]["flickr8k-standin"]["source"]["n_images"],
            "results": str(results), "wall_seconds": wall, "stages": stages, "peak_disk_bytes": peak[0],
            "final_disk_bytes": final, "disk_sample_seconds": interval, "cores": cores}


def report(runs: list[dict]) -> str:
    head = "stage".ljust(15) + "".join(f"{'1/' + str(r['fraction']) if r['fraction'] > 1 else 'full':>24}"
                                       for r in runs)
    lines = [head, " " * 15 + "".join(f"{'seconds':>11} {'RSS MiB':>11}" for _ in runs)
             + ("   RSS growth" if len(runs) == 2 else "")]
    names = [n for n, _ in STAGES if any(n in r["stages"] for r in runs)]
    for n in names:
        row = n.ljust(15)
        for r in runs:
            s = r["stages"].get(n)
            row += f"{s['seconds']:>11.1f} {s['peak_rss_mib']:>11}" if s else f"{'-':>11} {'-':>11}"
        if len(runs) == 2 and all(n in r["stages"] for r in runs):
            small, full = sorted(runs, key=lambda r: -r["fraction"])
            row += f"   {full['stages'][n]['peak_rss_mib'] / small['stages'][n]['peak_rss_mib'] - 1:+.0%}"
        lines.append(row)
    for r in runs:
        lines.append(f"{r['images']} images: wall {r['wall_seconds'] / 60:.1f} min on {r['cores']} cores; "
                     f"disk peak {r['peak_disk_bytes'] / 2 ** 30:.2f} GiB, final {r['final_disk_bytes'] / 2 ** 30:.2f}"
                     f" GiB (peak/final {r['peak_disk_bytes'] / r['final_disk_bytes']:.2f}, sampled every "
                     f"{r['disk_sample_seconds']:.0f} s)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 1], help="fractions: 1 = full, 8 = 1/8")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--tag", default=time.strftime("%Y%m%d-%H%M%S"), help="names the results folders")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between disk samples")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    runs = [rehearse(f, args.tag, args.cores, args.interval) for f in args.sizes]
    print(report(runs))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
