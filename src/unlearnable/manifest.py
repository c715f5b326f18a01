"""Dataset manifests: one validated Parquet table per dataset, the only way data reaches training.

Columns: image_id, image_path (relative to the dataset root), image_index (row in the image store),
caption_id, caption, split. Validation happens on write, so every later stage can trust the table.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from . import ConfigError, DataError
from .atomic import atomic_path

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


@dataclass(frozen=True)
class GenericLayout:
    """`images/` + a CSV of (image, caption) rows; column names configurable."""

    images_dir: str = "images"
    captions_file: str = "captions.csv"
    image_column: str = "image"
    caption_column: str = "caption"


@dataclass(frozen=True)
class SplitConfig:
    kind: str = "random"
    val: float = 0.1  # a fraction (<1) or a number of images (>=1)
    test: float = 0.1
    seed: int = 0


@dataclass
class Quality:
    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def bad(self, reason: str, message: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.examples.setdefault(reason, message)


def read_generic(root: str | Path, layout: GenericLayout = GenericLayout(), on_bad_sample: str = "fail"
                 ) -> tuple[pd.DataFrame, Quality]:
    """Read a generic layout into (image_path, caption) rows, checking every row and image."""
    root = Path(root)
    cap_file = root / layout.captions_file
    if not cap_file.is_file():
        raise DataError(f"{cap_file}: captions file not found")
    try:
        df = pd.read_csv(cap_file, dtype=str, keep_default_na=False, encoding="utf-8")
    except (UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"{cap_file}: cannot parse captions file ({str(e).splitlines()[0]})") from None
    for col in (layout.image_column, layout.caption_column):
        if col not in df.columns:
            raise DataError(f"{cap_file}: missing column {col!r} (found {list(df.columns)})")
    rows = pd.DataFrame({
        "image_path": (layout.images_dir + "/" + df[layout.image_column].str.strip()).str.lstrip("/"),
        "caption": df[layout.caption_column].str.strip(),
        "source_row": np.arange(len(df)) + 2,  # 1-based line number, after the header
    })
    return check_rows(rows, root, cap_file, on_bad_sample)


def check_rows(rows: pd.DataFrame, root: Path, source: Path, on_bad_sample: str = "fail"
               ) -> tuple[pd.DataFrame, Quality]:
    """Drop (or fail on) empty captions, duplicate rows and missing/undecodable images."""
    if on_bad_sample not in ("fail", "skip"):
        raise ConfigError(f"config key 'on_bad_sample': {on_bad_sample!r} is not one of 'fail', 'skip'")
    q = Quality(rows_read=len(rows))
    keep = np.ones(len(rows), dtype=bool)

    def reject(i: int, reason: str, message: str) -> None:
        if on_bad_sample == "fail":
            raise DataError(message)
        q.bad(reason, message)
        keep[i] = False

    for i, (cap, row) in enumerate(zip(rows["caption"], rows["source_row"])):
        if not cap:
            reject(i, "empty_caption", f"{source}: row {row}: empty caption")
    dup = rows.duplicated(["image_path", "caption"]).to_numpy()
    for i in np.flatnonzero(dup & keep):
        q.bad("duplicate_row", f"{source}: row {rows['source_row'].iat[i]}: duplicate of an earlier row")
        keep[i] = False  # exact duplicates are harmless to drop even in `fail` mode; they are counted

    paths = sorted(set(rows["image_path"][keep]))
    with ThreadPoolExecutor(max_workers=4) as pool:
        problems = dict(zip(paths, pool.map(lambda p: _image_problem(root / p), paths)))
    first_row = rows.groupby("image_path")["source_row"].min()
    for i, p in enumerate(rows["image_path"]):
        if keep[i] and problems[p]:
            reject(i, problems[p][0], f"{root / p}: {problems[p][1]} (referenced by {source} row {first_row[p]})")
    return rows[keep].reset_index(drop=True), q


def _image_problem(path: Path) -> tuple[str, str] | None:
    if not path.is_file():
        return "missing_image", "image file missing"
    if path.stat().st_size == 0:
        return "empty_image", "image file is empty (0 bytes)"
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as e:  # PIL raises many types for corrupt files
        return "undecodable_image", f"cannot decode image ({type(e).__name__}: {e})"
    return None


def assign_split(image_paths: list[str], cfg: SplitConfig) -> dict[str, str]:
    """Random split per image (never per caption, so no image appears in two splits)."""
    if cfg.kind != "random":
        raise ConfigError(f"config key 'split.kind': {cfg.kind!r} is not supported here (use 'random')")
    n = len(image_paths)
    n_test = _count(cfg.test, n, "split.test")
    n_val = _count(cfg.val, n, "split.val")
    if n_test + n_val >= n:
        raise ConfigError(f"config keys 'split.val'/'split.test': {n_val}+{n_test} images leave none of {n} for training")
    order = np.random.default_rng(cfg.seed).permutation(n)
    split = np.full(n, "train", dtype=object)
    split[order[:n_test]] = "test"
    split[order[n_test:n_test + n_val]] = "val"
    return dict(zip(sorted(image_paths), split))


def _count(x: float, n: int, key: str) -> int:
    if x < 0:
        raise ConfigError(f"config key '{key}': must be >= 0, got {x}")
    return int(round(x * n)) if x < 1 else int(x)


def build_manifest(rows: pd.DataFrame, split_of: dict[str, str]) -> pa.Table:
    paths = sorted(set(rows["image_path"]))
    index = {p: i for i, p in enumerate(paths)}
    ids = [Path(p).stem for p in paths]
    if len(set(ids)) != len(ids):
        ids = [str(Path(p).with_suffix("")) for p in paths]  # same stem in two folders: keep the folder
    id_of = dict(zip(paths, ids))
    table = pa.table({
        "image_id": [id_of[p] for p in rows["image_path"]],
        "image_path": rows["image_path"].tolist(),
        "image_index": np.array([index[p] for p in rows["image_path"]], dtype=np.int32),
        "caption_id": np.arange(len(rows), dtype=np.int64),
        "caption": rows["caption"].tolist(),
        "split": [split_of[p] for p in rows["image_path"]],
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
    if (per_image[["path", "index", "split"]] != 1).any().any():
        raise DataError("manifest: an image_id maps to several paths, store rows or splits")
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
        "dropped_examples": q.examples,
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
