"""Peak memory of `unlearnable protect` (full-size publishing) against the size of the largest photo.

For each size, a folder of 5 small photos plus one photo of that many megapixels (a 4:3 JPEG, a phone's
shape), or of a given shape (`--shapes 4000x4 10000x10`: a PNG strip, whose long side a square crop upsamples),
is protected in a fresh process with a minimal schedule. Two figures per size:

- the command's peak RSS: the largest of its processes, from the kernel (`wait4`; the folder is made in
  another process first, so that nothing of this one's memory is inherited through fork);
- the publisher's own peak (`VmHWM` of the process without torch that writes the full-size files, from
  `export.json`); the slope of a least-squares line through (pixels, that peak) is the cost of one more pixel.

    python bench/fullsize_memory.py --out bench/results/fullsize_memory.json
    python bench/fullsize_memory.py --megapixels 1 12 --shapes 4000x4 4x4000 10000x10 --out \
        bench/results/fullsize_memory_shapes.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from unlearnable.data.folders import PublishedDir

FAST = ["--rounds", "1", "--surrogate-steps", "1", "--pgd-steps", "1", "--hotflip-rounds", "1", "--candidates",
        "2", "--batch-size", "4", "--device", "cpu", "--threads", "2"]


def photo(width: int, height: int, seed: int) -> Image.Image:
    """Smooth gradients and a few discs: a photo's large smooth areas, so the JPEG stays a photo's size."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    px = np.empty((height, width, 3), dtype=np.uint8)
    for c in range(3):
        a, b, f = rng.uniform(0.2, 1.0, 3)
        px[..., c] = (255 * (0.5 + 0.25 * np.sin(6 * f * x + a) * np.cos(5 * f * y + b))).astype(np.uint8)
    img = Image.fromarray(px)
    del px
    return img


def folder(root: Path, size: str) -> tuple[int, int, str]:
    """`size`: megapixels (a 4:3 JPEG) or WIDTHxHEIGHT (a PNG)."""
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(5):
        photo(640, 480, i).save(root / "images" / f"small{i}.jpg", quality=90)
        rows.append((f"small{i}.jpg", f"a small photo number {i}"))
    if "x" in size:
        w, h = map(int, size.split("x"))
        name = "big.png"
        photo(w, h, 99).save(root / "images" / name)
    else:
        w = int(round((float(size) * 1e6 * 4 / 3) ** 0.5))
        h = int(round(w * 3 / 4))
        name = "big.jpg"
        photo(w, h, 99).save(root / "images" / name, quality=90)
    rows.append((name, "the big photo"))
    pd.DataFrame(rows, columns=["image", "caption"]).to_csv(root / "captions.csv", index=False)
    return w, h, name


def peak_rss(cmd: list[str]) -> tuple[int, float]:
    """(peak RSS in bytes, seconds) of a child process, from the kernel's accounting of that child alone."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()
    if proc.returncode != 0:
        sys.exit(f"protect failed ({proc.returncode}):\n{err[-3000:]}")
    return usage.ru_maxrss * 1024, time.time() - t0


def main() -> None:
    if sys.argv[1:2] == ["--make"]:  # child: write the folder, print the big photo's size
        print(*folder(Path(sys.argv[2]), sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--megapixels", type=float, nargs="*", default=[1, 12, 24, 48, 64])
    ap.add_argument("--shapes", nargs="*", default=[], help="WIDTHxHEIGHT photos (PNG), after the megapixels")
    ap.add_argument("--model", default="tiny-vit")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    for size in [str(mp) for mp in args.megapixels] + args.shapes:
        with tempfile.TemporaryDirectory(prefix="fullsize-mem-") as tmp:
            made = subprocess.run([sys.executable, __file__, "--make", f"{tmp}/photos", size], check=True,
                                  capture_output=True, text=True)
            w, h, name = made.stdout.split()
            w, h = int(w), int(h)
            cmd = [sys.executable, "-m", "unlearnable.cli", "protect", f"{tmp}/photos", f"{tmp}/out", "--model",
                   args.model, *FAST]
            peak, seconds = peak_rss(cmd)
            with Image.open(Path(tmp) / "out/published/images" / name) as im:
                assert im.size == (w, h) and im.format == ("PNG" if name.endswith(".png") else "JPEG")
            publisher = PublishedDir(Path(tmp) / "out/published").record()["publisher_peak_rss_mib"]
        rows.append({"megapixels": round(w * h / 1e6, 4), "width": w, "height": h, "peak_rss_mib": peak / 2**20,
                     "publisher_peak_rss_mib": publisher, "seconds": seconds})
        print(f"{w}x{h} ({w * h / 1e6:.1f} MP): peak RSS {peak / 2**20:.0f} MiB (publisher {publisher:.0f} MiB), "
              f"{seconds:.1f} s", flush=True)
    px = np.array([r["width"] * r["height"] for r in rows], dtype=np.float64)
    pub = np.array([r["publisher_peak_rss_mib"] * 2**20 for r in rows])
    slope, intercept = np.polyfit(px, pub, 1) if len(rows) > 1 else (float("nan"), float("nan"))
    print(f"publisher: {slope:.2f} bytes per pixel of the largest photo, {intercept / 2**20:.0f} MiB at 0 pixels")
    result = {"rows": rows, "publisher_bytes_per_pixel": slope, "publisher_intercept_mib": intercept / 2**20,
              "model": args.model, "cpu": platform.processor() or platform.machine(),
              "python": platform.python_version(), "command": "python " + " ".join(sys.argv)}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
