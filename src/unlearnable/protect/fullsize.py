"""Publish each image at its original size, name and format, carrying the noise optimised at model resolution.

The noise δ lives on the model's view of an image: bicubic resize of the short side to `res`, then a centre
crop. That resize is linear (before rounding), one matrix per axis, so the view of a published image
`x + Δ` is `view(x) + R_h Δ R_wᵀ`. We pick the smallest Δ (in the least-squares sense) whose view is δ
inside the crop and zero outside it: `Δ = R_h⁺ δ (R_w⁺)ᵀ`, with the pseudo-inverses of the resize matrices.
Rounding to 8 bits, clamping to [0, 255] and, for JPEG, compression make the published file's view differ
slightly from the optimised input; `export_full_size` measures that gap on every file and records it.

Memory stays at the decoded photo (PIL holds RGB in 4 bytes a pixel): Δ is added to it in place, computed a
strip of rows at a time from the half product `δ (R_w⁺)ᵀ` (model rows x full width), never as one full-size
float array (a 64 MP photo would need 1.5 GB of float64 noise). Which files are written where, in which
format, is `publish_plan`'s decision.
"""
from __future__ import annotations

import csv
import functools
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .. import DataError
from ..atomic import atomic_path, write_json
from ..data.decode import to_rgb
from ..data.folder import write_captions_csv
from ..data.image_store import load_square, open_image_store, square_geometry
from ..data.rowfile import RowFile
from ..paths import confined
from ..usage import own_peak_rss_mib
from .artifact import aligned_units, protected_pixels
from .publish_plan import PlannedImage, PublishPlan

log = logging.getLogger(__name__)
STRIP_ROWS = 64  # rows of the full-size noise held at once (64 x 8000 px x 3 x 4 B = 6 MB)


@functools.lru_cache(maxsize=64)
def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): PIL's bicubic resize along one axis, read off by resizing unit vectors, 512 at a time
    (the whole identity of an 8000 px axis would be 256 MB)."""
    cols = []
    for s in range(0, n_in, 512):
        block = np.zeros((min(512, n_in - s), n_in), dtype=np.float32)
        block[np.arange(len(block)), s + np.arange(len(block))] = 1.0
        cols.append(np.asarray(Image.fromarray(block).resize((n_out, len(block)), Image.Resampling.BICUBIC)))
    return np.concatenate(cols, axis=0).T.astype(np.float64)


@functools.lru_cache(maxsize=64)
def _pinv(n_in: int, n_out: int) -> np.ndarray:
    return np.linalg.pinv(resize_matrix(n_in, n_out))


class FullSizeNoise:
    """The least-squares full-size noise Δ [height, width, 3] of a model-resolution δ [res, res, 3], by rows."""

    def __init__(self, width: int, height: int, delta: np.ndarray):
        res = delta.shape[0]
        nw, nh, left, top = square_geometry(width, height, res)
        view = np.zeros((nh, nw, 3))
        view[top:top + res, left:left + res] = delta
        self.identity = (nw, nh) == (width, height)
        if self.identity:
            self.view = view.astype(np.float32)
        else:
            self.rows_map = _pinv(height, nh).astype(np.float32)  # (height, nh)
            # (nh, width, 3): the column resize undone once; each strip then needs one small matmul
            self.half = np.einsum("HWc,wW->Hwc", view, _pinv(width, nw)).astype(np.float32)

    def rows(self, r0: int, r1: int) -> np.ndarray:
        if self.identity:
            return self.view[r0:r1]
        return np.tensordot(self.rows_map[r0:r1], self.half, axes=1)


def bare(im: Image.Image) -> Image.Image:
    """The same pixels (shared, not copied) as a plain image with no metadata: PIL's writers carry a source's
    comment and XMP (JPEG, WebP) and its XMP, IPTC and Photoshop blocks (TIFF) into the file they write. Only
    the ICC profile, passed explicitly, is published."""
    plain = im._new(im.im)
    plain.info = {}
    return plain


def publish_image(src: Path, dest: Path, image: PlannedImage, delta: np.ndarray, jpeg_quality: int) -> None:
    """Write `src` plus its full-size noise to `dest` in the planned format. The noise is added to the decoded
    picture in place, a strip of rows at a time: memory is the decoded photo (4 bytes a pixel) plus a strip."""
    try:
        im = Image.open(src)
    except OSError as e:  # the file changed since it was checked
        raise DataError(f"{src}: cannot read the image to publish ({e.strerror or e})") from None
    try:
        rgb = to_rgb(im)
        icc = im.info.get("icc_profile")
        w, h = rgb.size
        noise = FullSizeNoise(w, h, delta.astype(np.float64))
        for r0 in range(0, h, STRIP_ROWS):
            r1 = min(h, r0 + STRIP_ROWS)
            strip = np.asarray(rgb.crop((0, r0, w, r1)), dtype=np.float32)
            strip += noise.rows(r0, r1)
            np.clip(np.rint(strip, out=strip), 0, 255, out=strip)
            rgb.paste(Image.fromarray(strip.astype(np.uint8)), (0, r0))
        options = {"quality": jpeg_quality, "subsampling": 0} if image.format == "JPEG" else {}
        if image.format == "WEBP":
            options = {"lossless": True}  # lossy WebP would smear the noise
        if icc and image.format in ("JPEG", "PNG", "WEBP", "TIFF"):
            options["icc_profile"] = icc  # colours shown as in the original
        dest.parent.mkdir(parents=True, exist_ok=True)
        bare(rgb).save(dest, format=image.format, **options)
        rgb.close()
    finally:
        im.close()


def _write_captions(path: Path, plan: PublishPlan, captions: list[str]) -> None:
    """The owner's captions file with the published caption in its caption field; else image,caption."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if plan.records is None:
        write_captions_csv(path, plan.row_files, captions)
        return
    field = plan.caption_file.caption_field
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(plan.caption_file.header)
        for rec, caption in zip(plan.records, captions):
            raw = rec[field]  # read stripped; its own leading and trailing space is given back
            caption = raw[:len(raw) - len(raw.lstrip())] + caption + raw[len(raw.rstrip()):]
            w.writerow([caption if i == field else v for i, v in enumerate(rec)])


def export_full_size(train_rows: pd.DataFrame, dataset_root: str | Path, store_path: str | Path,
                     protection: str | Path, captions: list[str], out_dir: str | Path, plan: PublishPlan,
                     jpeg_quality: int = 95) -> dict:
    """Every image at its own place, size and format (as `plan` says), carrying its image's noise.

    `captions`: each row's published caption (`export.published_captions`; made where the tokenizer is, so
    this function needs no torch and can run in a lean process, see `lean`)."""
    protection, root = Path(protection), Path(dataset_root)
    train_rows = train_rows.reset_index(drop=True)
    if len(plan.row_files) != len(train_rows):
        raise DataError(f"{protection}: the publishing plan has {len(plan.row_files)} rows, the manifest "
                        f"{len(train_rows)}")
    unit_of_pair, granularity = aligned_units(train_rows, protection)
    if granularity == "pair":
        raise DataError(f"{protection}: full-size publishing needs one noise per image, but this protection "
                        "has one per caption row (granularity: pair)")
    if len(captions) != len(train_rows):
        raise DataError(f"{protection}: {len(captions)} published captions for {len(train_rows)} rows")
    noise = RowFile(protection / "noise.npy")
    store = open_image_store(store_path)
    res = store.shape[1]
    first = train_rows.reset_index().drop_duplicates("image_path").set_index("image_path")
    gaps = []
    with atomic_path(out_dir) as tmp:
        for k, image in enumerate(plan.images):
            row = first.loc[image.source]
            delta = noise[unit_of_pair[[row["index"]]]][0]
            dest = confined(tmp, image.published)
            publish_image(confined(root, image.source), dest, image, delta, jpeg_quality)
            target = protected_pixels(store[[row["image_index"]]][0], delta)
            gaps.append(np.abs(load_square(dest, res).astype(np.int16) - target.astype(np.int16)))
            if (k + 1) % 100 == 0 or k + 1 == len(plan.images):
                log.info("published %d/%d full-size images", k + 1, len(plan.images))
        _write_captions(confined(tmp, plan.captions_name), plan, captions)
        gap = np.stack(gaps)
        meta = {"apply": "both", "granularity": granularity, "files": len(plan.images), "captions": len(captions),
                "size": "original", "jpeg_quality": jpeg_quality, "layout": plan.layout,
                "changed": plan.changed,
                "sources": {p.published: p.source for p in plan.images if p.published != p.source},
                "publisher_peak_rss_mib": own_peak_rss_mib(),
                "clip_view_gap": {"unit": "1/255", "mean": float(gap.mean()), "max": int(gap.max()),
                                  "p99": float(np.percentile(gap, 99)),
                                  "what": "|CLIP preprocessing of the published file - the optimised model input|"}}
        write_json(tmp / "export.json", meta)
    for change in plan.changed:
        log.warning("published %s as %s: %s", change["source"], change["published"],
                    "; ".join(v for k, v in change.items() if k in ("mode", "why")))
    log.info("CLIP view of the published files vs the optimised input: mean %.3f, max %d (1/255)",
             meta["clip_view_gap"]["mean"], meta["clip_view_gap"]["max"])
    return meta
