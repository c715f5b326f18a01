"""The published layout: `images/*.png`, `captions.csv`, `manifest.parquet` and `images.npy`.

It is the one layout a victim trains from: what a data owner publishes (protect/export.py) and what a
scraper's defence leaves of it (defences.py). The victim reads it through the same ingest as any dataset.
"""
from __future__ import annotations

import csv
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from ..paths import confined

log = logging.getLogger(__name__)


def save_pngs(folder: Path, chunks: Iterable[tuple[list[str], np.ndarray]], workers: int,
              transform: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
    """Write each chunk's (file names, uint8 NHWC pixels) as PNGs, through `transform` if given. PNG encoding
    releases the GIL: a thread pool writes a chunk's files in parallel."""
    from PIL import Image

    def save(item):
        name, px = item
        dest = confined(folder, name)  # names come from image ids: nested (`a/x`), never outside
        dest.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(px if transform is None else transform(px)).save(dest, compress_level=1)

    done = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for names, pixels in chunks:
            list(pool.map(save, zip(names, pixels)))
            done += len(names)
            log.info("wrote %d image files", done)


def write_captions_csv(path: Path, files: list[str], captions: list[str]) -> None:
    """`captions.csv`: one (image file, caption) row per caption, the generic layout's caption file."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        w.writerows(zip(files, captions))


def write_layout(folder: Path, files: list[str], captions: list[str], resolution: int, workers: int,
                 on_bad_sample: str = "fail") -> tuple[pd.DataFrame, object]:
    """Beside `folder/images`: `captions.csv` (file, caption per row), the checked rows as a train-only
    manifest, and the image store at `resolution`. Returns the kept rows and the row check's record."""
    from .image_store import build_image_store
    from .manifest import build_manifest, check_rows, default_ids, write_manifest

    write_captions_csv(folder / "captions.csv", files, captions)
    rows = pd.DataFrame({"image_path": ["images/" + n for n in files], "caption": captions,
                         "where": [f"{folder / 'captions.csv'}: row {n}" for n in range(2, len(files) + 2)]})
    kept, quality = check_rows(rows, folder, on_bad_sample=on_bad_sample)
    if kept.empty:
        return kept, quality
    kept["image_id"] = default_ids(kept["image_path"])
    table = build_manifest(kept, {i: "train" for i in kept["image_id"]})
    write_manifest(table, folder / "manifest.parquet")
    build_image_store(table.to_pandas(), folder, folder / "images.npy", resolution, workers=max(1, workers))
    return kept, quality
