"""A stand-in for Flickr8k with its exact layout and size, for rehearsing the paper's setting offline.

Kaggle's Flickr8k copy is `Images/*.jpg` (8,091 JPEGs, mostly 500 px on the long side) and `captions.txt`
(`image,caption`, five captions per image). The stand-in writes the same: JPEGs at Flickr-typical sizes with
photo-like texture (so their bytes and decode cost are a photo's), five captions each (the `shapes`
scenes, whose captions describe their image), and file names taken from the paper's val/test lists plus
Flickr-style names for the rest, so that `split: paper` applies unchanged. A fraction of the size keeps the
same proportion of listed names, so the split's proportions hold at every size.
"""
from __future__ import annotations

import csv
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .. import ConfigError
from ..atomic import atomic_path
from ..paths import CONFIG_DIR
from .shapes import ShapesConfig, render_sample

log = logging.getLogger(__name__)
FLICKR8K_IMAGES = 8091
LISTS_DIR = CONFIG_DIR / "splits"
# (width, height) and weights: Flickr8k is mostly 500 px on the long side, landscape more often than portrait
SIZES = (((500, 375), 0.45), ((500, 333), 0.2), ((375, 500), 0.15), ((333, 500), 0.1), ((500, 500), 0.05),
         ((500, 281), 0.05))


@dataclass(frozen=True)
class StandinConfig:
    n_images: int = FLICKR8K_IMAGES
    captions_per_image: int = 5
    lists: str = "flickr8k"
    jpeg_quality: int = 90
    seed: int = 0


def file_names(cfg: StandinConfig, lists_dir: Path = LISTS_DIR) -> list[str]:
    listed = []
    if not any((lists_dir / f"{cfg.lists}_{part}.txt").is_file() for part in ("val", "test")):
        raise ConfigError(f"standin source: no split lists {cfg.lists}_val.txt / {cfg.lists}_test.txt in {lists_dir}")
    for part in ("val", "test"):
        path = lists_dir / f"{cfg.lists}_{part}.txt"
        if path.is_file():
            names = [n.strip() for n in path.read_text().splitlines() if n.strip()]
            listed += names[:round(len(names) * cfg.n_images / FLICKR8K_IMAGES)]
    if len(listed) >= cfg.n_images:
        raise ConfigError(f"standin source: n_images {cfg.n_images} leaves no training images")
    rng = np.random.default_rng([cfg.seed, 1])
    taken, names = set(listed), list(listed)
    while len(names) < cfg.n_images:  # Flickr's own form: <photo id>_<10 hex digits>.jpg
        name = f"{rng.integers(10 ** 8, 4 * 10 ** 9)}_{rng.integers(16 ** 9, 16 ** 10):010x}.jpg"
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def render(index: int, cfg: StandinConfig) -> tuple[Image.Image, list[str]]:
    scene, captions = render_sample(index, ShapesConfig(image_size=160, captions_per_image=cfg.captions_per_image,
                                                        seed=cfg.seed))
    rng = np.random.default_rng([cfg.seed, 2, index])
    sizes, weights = zip(*SIZES)
    w, h = sizes[int(rng.choice(len(sizes), p=np.array(weights) / sum(weights)))]
    img = np.asarray(scene.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    light = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(1.0, 1.2), w, dtype=np.float32)[None, :, None]
    img = img * light + rng.normal(0, 9, (h, w, 3)).astype(np.float32)  # lighting and sensor-like grain
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)), captions


def _write_one(args) -> tuple[str, list[str]]:
    index, name, folder, cfg = args
    img, captions = render(index, cfg)
    img.save(folder / name, quality=cfg.jpeg_quality)
    return name, captions


def write_standin(out_dir: str | Path, cfg: StandinConfig = StandinConfig(), workers: int = 2) -> Path:
    """Write `Images/` and `captions.txt` atomically (a half-written folder never appears at `out_dir`)."""
    if cfg.n_images < 10 or cfg.captions_per_image < 1:
        raise ConfigError(f"standin source: invalid settings {cfg}")
    names = file_names(cfg)
    out_dir, t0 = Path(out_dir), time.time()
    with atomic_path(out_dir) as tmp:
        (tmp / "Images").mkdir(parents=True)
        with ProcessPoolExecutor(max_workers=workers) as pool, \
                open(tmp / "captions.txt", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["image", "caption"])
            jobs = ((i, n, tmp / "Images", cfg) for i, n in enumerate(names))
            for done, (name, captions) in enumerate(pool.map(_write_one, jobs, chunksize=64), 1):
                w.writerows([name, c] for c in captions)
                if done % 1000 == 0 or done == len(names):
                    rate = done / (time.time() - t0)
                    log.info("stand-in: %d/%d images (%.0f img/s, ETA %.0fs)", done, len(names), rate,
                             (len(names) - done) / rate)
    return out_dir
