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
from ..atomic import atomic_path
from ..data.decode import to_rgb
from ..data.folder import write_captions_csv
from ..data.image_store import load_square, open_image_store, square_geometry
from ..data.folders import ProtectionDir, PublishedDir
from ..paths import confined
from ..usage import own_peak_rss_mib
from .artifact import aligned_units, protected_pixels
from .publish_plan import PlannedImage, PublishPlan

log = logging.getLogger(__name__)
STRIP_ROWS = 64  # rows of the full-size noise held at once (64 x 8000 px x 3 x 4 B = 6 MB)


MAX_DENSE = 1 << 22  # entries of one axis's resize matrix (32 MB in float64) above which it is solved on a window
WINDOW_MARGIN = 32  # input pixels beyond the crop's bicubic support that a windowed solve may use


def _unit_responses(n_in: int, n_out: int, lo: int, hi: int, out_lo: int = 0, out_hi: int | None = None
                    ) -> np.ndarray:
    """(out_hi - out_lo, hi - lo): outputs out_lo..out_hi of PIL's bicubic resize along one axis of the unit
    vectors lo..hi, 512 at a time (PIL's `box` gives a run of outputs with the full resize's coefficients)."""
    out_hi = n_out if out_hi is None else out_hi
    box = (out_lo * n_in / n_out, out_hi * n_in / n_out)
    cols = []
    for s in range(lo, hi, 512):
        block = np.zeros((min(512, hi - s), n_in), dtype=np.float32)
        block[np.arange(len(block)), s + np.arange(len(block))] = 1.0
        cols.append(np.asarray(Image.fromarray(block).resize((out_hi - out_lo, len(block)), Image.Resampling.BICUBIC,
                                                             box=(box[0], 0, box[1], len(block)))))
    return np.concatenate(cols, axis=0).T.astype(np.float64)


@functools.lru_cache(maxsize=64)
def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): PIL's bicubic resize along one axis, read off by resizing unit vectors."""
    return _unit_responses(n_in, n_out, 0, n_in)


@functools.lru_cache(maxsize=64)
def crop_inverse(n_in: int, n_out: int, lo: int, hi: int) -> tuple[int, np.ndarray]:
    """(first, P): the full-size noise along one axis whose resize is a unit at crop position lo..hi and zero
    elsewhere, as rows first..first + len(P) of the axis (zero outside them); P is (rows, hi - lo).

    A small axis takes the exact pseudo-inverse of its resize. A long one (a 10000 x 10 strip, whose short side
    is upsampled and long side becomes 22 million model pixels) is solved on the input pixels that reach the
    crop, plus a margin: memory and time then follow the crop, never the axis (the least-squares solution on
    the window differs from the full one by far less than the rounding to 8 bits; the published files' view
    gap is measured anyway)."""
    if n_in * n_out <= MAX_DENSE:
        return 0, np.linalg.pinv(resize_matrix(n_in, n_out))[:, lo:hi]
    scale = n_out / n_in
    reach = 2 * max(1.0, 1 / scale) + 1  # bicubic support, in input pixels
    first = max(0, int(np.floor((lo + 0.5) / scale - 0.5 - reach)) - WINDOW_MARGIN)
    last = min(n_in, int(np.ceil((hi - 0.5) / scale - 0.5 + reach)) + WINDOW_MARGIN + 1)
    out_lo = max(0, int(np.floor((first - reach + 0.5) * scale - 0.5)) - 2)  # every output the window reaches
    out_hi = min(n_out, int(np.ceil((last - 1 + reach + 0.5) * scale - 0.5)) + 3)
    response = _unit_responses(n_in, n_out, first, last, out_lo, out_hi)  # (outputs, window)
    touched = np.flatnonzero(np.abs(response).sum(axis=1) > 1e-6)
    c, d = int(touched[0]), int(touched[-1]) + 1  # the outputs the window reaches (a superset of the crop)
    return first, np.linalg.pinv(response[c:d])[:, lo - out_lo - c:hi - out_lo - c]


class FullSizeNoise:
    """The least-squares full-size noise Δ [height, width, 3] of a model-resolution δ [res, res, 3], by rows.

    Δ = P_rows δ P_colsᵀ, where P_axis holds the crop's columns of that axis's resize pseudo-inverse, on the rows
    of the axis it reaches (`crop_inverse`); memory is the crop's rows times the width it reaches, whatever the
    photo's shape."""

    def __init__(self, width: int, height: int, delta: np.ndarray):
        res = delta.shape[0]
        nw, nh, left, top = square_geometry(width, height, res)
        self.width = width
        if (nw, nh) == (width, height):
            self.row0, self.col0 = top, left
            self.row_map = np.eye(res, dtype=np.float32)
            self.half = delta.astype(np.float32)
            return
        self.row0, row_map = crop_inverse(height, nh, top, top + res)
        self.col0, col_map = crop_inverse(width, nw, left, left + res)
        self.row_map = row_map.astype(np.float32)  # (rows reached, res)
        # (res, columns reached, 3): the column resize undone once; each strip then needs one small matmul
        self.half = np.einsum("hwc,Ww->hWc", delta.astype(np.float64), col_map).astype(np.float32)

    def rows(self, r0: int, r1: int) -> np.ndarray:
        out = np.zeros((r1 - r0, self.width, 3), dtype=np.float32)
        a, b = max(r0, self.row0), min(r1, self.row0 + len(self.row_map))
        if a < b:
            c0, c1 = self.col0, self.col0 + self.half.shape[1]
            out[a - r0:b - r0, c0:c1] = np.tensordot(self.row_map[a - self.row0:b - self.row0], self.half, axes=1)
        return out


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
    noise = ProtectionDir(protection).noise()
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
        PublishedDir(tmp).write_record(meta)
    for change in plan.changed:
        log.warning("published %s as %s: %s", change["source"], change["published"],
                    "; ".join(v for k, v in change.items() if k in ("mode", "why")))
    log.info("CLIP view of the published files vs the optimised input: mean %.3f, max %d (1/255)",
             meta["clip_view_gap"]["mean"], meta["clip_view_gap"]["max"])
    return meta
