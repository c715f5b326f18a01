"""Decode images once, at model resolution, into a uint8 NHWC array file (an .npy).

Training and poisoning read the rows of each batch with pread and the store is written with pwrite (see
`rowfile`), not through a memory map: no JPEG/PNG is decoded twice, and resident memory does not grow with
the dataset. Row `i` holds the image whose manifest `image_index` is `i`.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .. import DataError
from ..atomic import atomic_path, write_json
from ..paths import confined
from .decode import to_rgb
from .rowfile import RowFile

log = logging.getLogger(__name__)
Image.MAX_IMAGE_PIXELS = 20_000 * 20_000  # decompression-bomb guard, generous for real photos


def square_geometry(w: int, h: int, resolution: int) -> tuple[int, int, int, int]:
    """(resized width, resized height, crop left, crop top) of CLIP's resize-then-centre-crop."""
    s = resolution / min(w, h)
    nw, nh = max(resolution, round(w * s)), max(resolution, round(h * s))
    return nw, nh, (nw - resolution) // 2, (nh - resolution) // 2


def load_square(path: Path, resolution: int) -> np.ndarray:
    """CLIP's preprocessing: bicubic resize of the short side, centre crop, RGB uint8 HWC (see `decode`)."""
    try:
        with Image.open(path) as im:
            im = to_rgb(im)
            nw, nh, left, top = square_geometry(*im.size, resolution)
            if (nw, nh) != im.size:
                im = im.resize((nw, nh), Image.Resampling.BICUBIC)
            im = im.crop((left, top, left + resolution, top + resolution))
            return np.asarray(im, dtype=np.uint8)
    except Exception as e:
        raise DataError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from None


def build_image_store(manifest: pd.DataFrame, root: str | Path, out: str | Path, resolution: int,
                      workers: int = 4) -> Path:
    root, out = Path(root), Path(out)
    images = manifest.drop_duplicates("image_index").sort_values("image_index")
    n = len(images)
    if not np.array_equal(images["image_index"].to_numpy(), np.arange(n)):
        raise DataError("manifest: image_index is not 0..N-1")
    paths = [confined(root, p) for p in images["image_path"]]  # a manifest edited by hand is still untrusted
    t0 = time.time()
    with atomic_path(out) as tmp:
        # written with pwrite, not through a memory map: mapped pages written count in the job's resident
        # memory, which would then grow with the dataset (4.6 GB for Flickr8k's 30,455 pairs at 224 px)
        store = RowFile.create(tmp, (n, resolution, resolution, 3), np.uint8)
        chunk = 256
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                store.write(np.arange(start, stop),
                            np.stack(list(pool.map(lambda p: load_square(p, resolution), paths[start:stop]))))
                rate = stop / max(time.time() - t0, 1e-9)
                log.info("image store: %d/%d images (%.0f img/s, ETA %.0fs)", stop, n, rate, (n - stop) / rate)
        store.flush()
        store.close()
    write_json(out.with_suffix(".json"), {"images": n, "resolution": resolution, "dtype": "uint8",
                                          "layout": "NHWC"})  # no local path: a published store holds one
    return out


def open_image_store(path: str | Path) -> RowFile:
    """Row reader over the store; reads only the rows asked for, so memory stays flat (see rowfile)."""
    arr = RowFile(path)
    if arr.dtype != np.uint8 or len(arr.shape) != 4 or arr.shape[-1] != 3:
        raise DataError(f"{path}: not an image store (dtype {arr.dtype}, shape {arr.shape})")
    return arr
