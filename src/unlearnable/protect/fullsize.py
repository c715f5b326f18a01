"""Publish each image at its original size, name and format, carrying the noise optimised at model resolution.

The noise δ lives on the model's view of an image: bicubic resize of the short side to `res`, then a centre
crop. That resize is linear (before rounding), one matrix per axis, so the view of a published image
`x + Δ` is `view(x) + R_h Δ R_wᵀ`. We pick the smallest Δ (in the least-squares sense) whose view is δ
inside the crop and zero outside it: `Δ = R_h⁺ δ (R_w⁺)ᵀ`, with the pseudo-inverses of the resize matrices.
Rounding to 8 bits, clamping to [0, 255] and, for JPEG, compression make the published file's view differ
slightly from the optimised input; `export_full_size` measures that gap on every file and records it.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from .. import DataError
from ..atomic import atomic_path, write_json
from ..decode import to_rgb
from ..folder import write_captions_csv
from ..image_store import load_square, open_image_store, square_geometry
from ..paths import confined
from ..rowfile import RowFile
from .export import aligned_units, protected_pixels, published_captions

log = logging.getLogger(__name__)
FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF",
           ".tiff": "TIFF"}


@functools.lru_cache(maxsize=64)
def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): PIL's bicubic resize along one axis, read off by resizing the unit vectors."""
    eye = np.eye(n_in, dtype=np.float32)
    cols = [np.asarray(Image.fromarray(eye[s:s + 512]).resize((n_out, len(eye[s:s + 512])), Image.Resampling.BICUBIC))
            for s in range(0, n_in, 512)]
    return np.concatenate(cols, axis=0).T.astype(np.float64)


@functools.lru_cache(maxsize=64)
def _pinv(n_in: int, n_out: int) -> np.ndarray:
    return torch.linalg.pinv(torch.from_numpy(resize_matrix(n_in, n_out))).numpy()


def full_size_noise(width: int, height: int, delta: np.ndarray) -> np.ndarray:
    """Model-resolution noise δ [res, res, 3] -> the least-squares full-size noise Δ [height, width, 3]."""
    res = delta.shape[0]
    nw, nh, left, top = square_geometry(width, height, res)
    view = np.zeros((nh, nw, 3))
    view[top:top + res, left:left + res] = delta
    if (nw, nh) == (width, height):
        return view
    pw, ph = _pinv(width, nw), _pinv(height, nh)  # (width, nw), (height, nh)
    return np.einsum("hH,HWc,wW->hwc", ph, view, pw, optimize=True)


def export_full_size(train_rows: pd.DataFrame, dataset_root: str | Path, store_path: str | Path,
                     protection: str | Path, tok, out_dir: str | Path, jpeg_quality: int = 95) -> dict:
    """One published file per image (image granularity) with its original name, size and format."""
    protection, root = Path(protection), Path(dataset_root)
    train_rows = train_rows.reset_index(drop=True)
    unit_of_pair, granularity = aligned_units(train_rows, protection)
    if granularity != "image":
        raise DataError(f"{protection}: full-size publishing needs one noise per image (granularity: image)")
    noise = RowFile(protection / "noise.npy")
    triggers = np.load(protection / "triggers.npy", allow_pickle=False)
    store = open_image_store(store_path)
    res = store.shape[1]
    first = train_rows.reset_index().drop_duplicates("image_path")
    gaps, names = [], {}
    with atomic_path(out_dir) as tmp:
        for k, row in enumerate(first.itertuples()):
            src = confined(root, row.image_path)
            name = Path(row.image_path).name
            if name in names.values():
                raise DataError(f"{src}: two images share the file name {name}; publish them from separate folders")
            names[row.image_path] = name
            with Image.open(src) as im:
                fmt = FORMATS.get(src.suffix.lower(), "PNG")
                pixels = np.asarray(to_rgb(im), dtype=np.float64)
            delta = noise[unit_of_pair[row.index]][0]
            big = full_size_noise(pixels.shape[1], pixels.shape[0], delta.astype(np.float64))
            out = np.clip(np.rint(pixels + big), 0, 255).astype(np.uint8)
            dest = tmp / "images" / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            options = {"quality": jpeg_quality, "subsampling": 0} if fmt == "JPEG" else {}
            Image.fromarray(out).save(dest, format=fmt, **options)
            target = protected_pixels(store[[row.image_index]][0], delta)
            gaps.append(np.abs(load_square(dest, res).astype(np.int16) - target.astype(np.int16)))
            if (k + 1) % 100 == 0 or k + 1 == len(first):
                log.info("published %d/%d full-size images", k + 1, len(first))
        captions = published_captions(train_rows, unit_of_pair, triggers, tok)
        write_captions_csv(tmp / "captions.csv", [names[p] for p in train_rows["image_path"]], captions)
        gap = np.stack(gaps)
        meta = {"apply": "both", "granularity": granularity, "files": len(first), "captions": len(captions),
                "size": "original", "jpeg_quality": jpeg_quality,
                "clip_view_gap": {"unit": "1/255", "mean": float(gap.mean()), "max": int(gap.max()),
                                  "p99": float(np.percentile(gap, 99)),
                                  "what": "|CLIP preprocessing of the published file - the optimised model input|"}}
        write_json(tmp / "export.json", meta)
    log.info("CLIP view of the published files vs the optimised input: mean %.3f, max %d (1/255)",
             meta["clip_view_gap"]["mean"], meta["clip_view_gap"]["max"])
    return meta
