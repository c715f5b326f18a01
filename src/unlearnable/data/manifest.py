"""Dataset manifests: one validated Parquet table per dataset, the only way data reaches training.

Columns: image_id, image_path (relative to the dataset root), image_index (row in the image store),
caption_id, caption, split. Validation happens on write, so every later stage can trust the table.
"""
from __future__ import annotations

import logging
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from .. import ConfigError, DataError
from ..atomic import atomic_path
from ..paths import escapes, real

log = logging.getLogger(__name__)

SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("image_path", pa.string()),
    ("image_index", pa.int32()),
    ("caption_id", pa.int64()),
    ("caption", pa.string()),
    ("split", pa.string()),
])
SPLITS = ("train", "val", "test")


@dataclass
class Quality:
    """What reading a dataset met: rows dropped per reason (with a first example), rows repaired, and rows
    kept that repeat another row's caption of the same image (two annotators wrote the same sentence)."""

    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    repaired: dict[str, int] = field(default_factory=dict)
    repeated: dict[str, int] = field(default_factory=dict)

    def bad(self, reason: str, message: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.examples.setdefault(reason, message)

    def note(self, reason: str, message: str) -> None:
        self.repaired[reason] = self.repaired.get(reason, 0) + 1
        self.examples.setdefault(reason, message)

    def repeat(self, reason: str, message: str) -> None:
        self.repeated[reason] = self.repeated.get(reason, 0) + 1
        self.examples.setdefault(reason, message)


def check_rows(rows: pd.DataFrame, root: Path, on_bad_sample: str = "fail", max_image_pixels: int = 89_478_485
               ) -> tuple[pd.DataFrame, Quality]:
    """Drop (or fail on) empty captions and missing, empty, corrupt or oversized images.

    A row repeating another caption of the same image is data, not a bad sample: real datasets have them
    (Flickr8k has 10, where two annotators wrote the same sentence). It is kept, so a published copy keeps
    every row of the owner's file, and counted under `repeated`. `rows` needs image_path, caption and
    `where` (file and row, for messages).
    """
    if on_bad_sample not in ("fail", "skip"):
        raise ConfigError(f"config key 'on_bad_sample': {on_bad_sample!r} is not one of 'fail', 'skip'")
    root = Path(root)
    q = Quality(rows_read=len(rows))
    keep = np.ones(len(rows), dtype=bool)

    def reject(i: int, reason: str, message: str) -> None:
        if on_bad_sample == "fail":
            raise DataError(message)
        q.bad(reason, message)
        keep[i] = False

    for i, (cap, where) in enumerate(zip(rows["caption"], rows["where"])):
        if not cap.strip():
            reject(i, "empty_caption", f"{where}: empty caption")
    dup = rows.duplicated(["image_path", "caption"]).to_numpy()
    first_row = rows.drop_duplicates(["image_path", "caption"]).set_index(["image_path", "caption"])["where"]
    for i in np.flatnonzero(dup & keep):
        q.repeat("repeated_caption", f"{rows['where'].iat[i]}: repeats "
                 f"{first_row[(rows['image_path'].iat[i], rows['caption'].iat[i])]} (kept)")

    outside = {p: escapes(root, p) for p in set(rows["image_path"])}  # one realpath per image, not per caption
    for i, p in enumerate(rows["image_path"]):  # never open a file the captions point outside the dataset to
        if keep[i] and (where := outside[p]) is not None:
            reject(i, "path_outside_dataset", f"{rows['where'].iat[i]}: image path {p!r} resolves to {where}, "
                   f"outside the dataset folder {real(root)} (path_outside_dataset)")
    paths = sorted(set(rows["image_path"][keep]))
    with ThreadPoolExecutor(max_workers=4) as pool:
        problems = dict(zip(paths, pool.map(lambda p: _image_problem(root / p, max_image_pixels), paths)))
    first_where = rows[keep].drop_duplicates("image_path").set_index("image_path")["where"]
    for i, p in enumerate(rows["image_path"]):
        if keep[i] and problems[p]:
            reject(i, problems[p][0], f"{root / p}: {problems[p][1]} (referenced by {first_where[p]})")
    log.info("checked %d rows and %d images: %d rows kept", len(rows), len(paths), int(keep.sum()))
    return rows[keep].reset_index(drop=True), q


def _image_problem(path: Path, max_pixels: int) -> tuple[str, str] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return "missing_image", "image file missing"
    except OSError as e:
        return "unreadable_image", f"cannot read image file ({e.strerror})"
    if not stat.S_ISREG(st.st_mode):  # opening a FIFO would block forever; a device could be endless
        return "not_regular_file", "not a regular file (a folder, FIFO, socket or device)"
    if st.st_size == 0:
        return "empty_image", "image file is empty (0 bytes)"
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:  # checked from the header, before any decoding (decompression bombs)
                return "huge_image", f"image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels}"
            im.draft("RGB", (max(1, w // 4), max(1, h // 4)))  # JPEG: decode at 1/4 scale, still reads every byte
            im.load()
    except Exception as e:  # PIL raises many types for corrupt files
        reason = "truncated_image" if "truncated" in str(e).lower() else "undecodable_image"
        return reason, f"cannot decode image ({type(e).__name__}: {e})"
    return None


def default_ids(paths: pd.Series) -> list[str]:
    """File stems; else the path without suffix where two folders share a stem; else the whole path, where
    one folder holds the same stem twice (`img00.png` beside `img00.jpg` are two images)."""
    uniq = sorted(set(paths))
    for ids in ([Path(p).stem for p in uniq], [str(Path(p).with_suffix("")) for p in uniq], uniq):
        if len(set(ids)) == len(ids):
            break
    id_of = dict(zip(uniq, ids))
    return [id_of[p] for p in paths]


def build_manifest(rows: pd.DataFrame, split_of: dict[str, str | None]) -> pa.Table:
    """Rows -> validated table; `split_of` maps image_id to a split, or None to leave the image out (caps)."""
    if "image_id" not in rows:
        rows = rows.assign(image_id=default_ids(rows["image_path"]))
    rows = rows[rows["image_id"].map(split_of).notna()]
    paths = sorted(set(rows["image_path"]))
    index = {p: i for i, p in enumerate(paths)}
    table = pa.table({
        "image_id": rows["image_id"].astype(str).tolist(),
        "image_path": rows["image_path"].tolist(),
        "image_index": np.array([index[p] for p in rows["image_path"]], dtype=np.int32),
        "caption_id": np.arange(len(rows), dtype=np.int64),
        "caption": rows["caption"].tolist(),
        "split": rows["image_id"].map(split_of).tolist(),
    }, schema=SCHEMA)
    validate(table)
    return table


def validate(table: pa.Table) -> None:
    """Invariants every consumer relies on; violations are bugs upstream, named precisely."""
    if table.schema != SCHEMA:
        raise DataError(f"manifest schema mismatch: {table.schema}")
    df = table.to_pandas()
    if df.empty:
        raise DataError("manifest is empty")
    if df["caption_id"].duplicated().any():
        raise DataError("manifest: duplicate caption_id")
    blank = df["caption"].str.strip() == ""
    if blank.any():
        raise DataError(f"manifest: empty caption at caption_id {int(df['caption_id'][blank].iloc[0])}")
    per_image = df.groupby("image_id").agg(path=("image_path", "nunique"), index=("image_index", "nunique"),
                                           split=("split", "nunique"))
    bad = per_image[(per_image[["path", "index", "split"]] != 1).any(axis=1)]
    if len(bad):
        image_id = bad.index[0]
        paths = sorted(set(df.loc[df["image_id"] == image_id, "image_path"]))
        what = f"the files {' and '.join(paths[:2])}" if len(paths) > 1 else "several store rows or splits"
        raise DataError(f"manifest: image_id {image_id!r} names {what}; give each image its own id (or file stem)")
    if df.groupby("image_index")["image_id"].nunique().max() != 1:
        raise DataError("manifest: an image_index is shared by several images")
    if not set(df["split"]) <= set(SPLITS):
        raise DataError(f"manifest: unknown split values {set(df['split']) - set(SPLITS)}")


def quality_summary(table: pa.Table, q: Quality) -> dict:
    df = table.to_pandas()
    cpi = df.groupby("image_id").size()
    words = df["caption"].str.split().str.len()
    splits = {s: {"images": int(df.loc[df.split == s, "image_id"].nunique()), "captions": int((df.split == s).sum())}
              for s in SPLITS}
    return {
        "rows_read": q.rows_read,
        "rows_kept": len(df),
        "dropped": q.dropped,
        "repaired": q.repaired,
        "repeated": q.repeated,
        "examples": q.examples,
        "images": int(df["image_id"].nunique()),
        "captions": len(df),
        "captions_per_image": {"min": int(cpi.min()), "mean": float(cpi.mean()), "max": int(cpi.max())},
        "caption_words": {"min": int(words.min()), "mean": float(words.mean()), "max": int(words.max())},
        "splits": splits,
    }


def write_manifest(table: pa.Table, path: str | Path) -> None:
    validate(table)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_manifest(path: str | Path) -> pd.DataFrame:
    table = pq.read_table(path)
    validate(table)
    return table.to_pandas()
