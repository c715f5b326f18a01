"""Where and how each image of an owner's folder will be published, decided and checked before any compute.

A published copy keeps the folder as it was: each file at its own relative path, in the format its name
says, and the captions file with every column and row order of the original (only the caption field gains
the trigger). Some files cannot be kept exactly; each such change is decided here, listed in the
published `export.json` under `changed`, and never silent:

- A GIF holds at most 256 colours, too few to carry an 8/255 noise: it is published as PNG under the same
  name with `.png` (the caption rows name the new file). So is any file whose suffix has no writer here.
- Animated files (several frames: GIF, APNG, WebP, multi-page TIFF) are refused: the noise is made for one
  frame, and publishing that frame alone would drop the animation. Phones' MPO JPEGs are the exception: the
  main image is published and the extra frames (a depth map or preview) are dropped.
- The noise has three colour channels, so greyscale, palette, CMYK and 16-bit files (48-bit PNGs included,
  which PIL opens as plain RGB) are published as 8-bit RGB, float files say how their values were read, and
  transparency is composited on white (as the model sees it).
- A file whose content is not what its suffix says (a PNG named `.jpg`) is written in the suffix's format, as
  any viewer of the name expects, and listed.
- A name is a POSIX path: a backslash is part of the file's name, never a folder separator, so the file is
  published under the very name its caption row gives.
- Under `--on-bad-sample skip`, an animated file is a bad sample: left out with its rows, and counted.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .. import DataError
from ..data.decode import float_range
from ..data.sources import CaptionFile, LayoutConfig

FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG", ".png": "PNG", ".webp": "WEBP",
           ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
WHY_MODE = {"RGBA": "transparency composited on white", "LA": "transparency composited on white",
            "PA": "transparency composited on white"}


@dataclass(frozen=True)
class PlannedImage:
    source: str  # relative to the dataset folder
    published: str  # relative to the published folder
    format: str  # PIL format name to write
    size: tuple[int, int]
    change: dict = field(default_factory=dict)  # empty when the file is kept as it was


@dataclass(frozen=True)
class PublishPlan:
    images: list[PlannedImage]  # one per image, in order of first caption row
    row_files: list[str]  # each caption row's image field as published
    records: list[list[str]] | None  # each caption row's fields, as the owner wrote them (generic layout)
    caption_file: CaptionFile | None
    captions_name: str  # the captions file, relative to the published folder
    layout: dict  # how to read the published folder back (a generic LayoutConfig's fields)

    @property
    def changed(self) -> list[dict]:
        return [{"source": p.source, "published": p.published, **p.change} for p in self.images if p.change]


def _relative(path: str, where: str) -> str:
    """A path from data, normalised, refused unless it stays inside the folder it names a place in."""
    norm = posixpath.normpath(path)
    if norm.startswith("/") or norm == "." or norm.split("/")[0] == "..":
        raise DataError(f"{where}: {path!r} cannot be published at the same place (it leaves the folder)")
    return norm


def _inspect(root: Path, source: str, suffix: str, where: str) -> tuple[str, str | None, tuple[int, int], dict]:
    """(format to write, new suffix or None, size as shown, change) from the file's header; no decoding."""
    with Image.open(root / source) as im:
        frames, fmt_in, mode, size = getattr(im, "n_frames", 1), im.format, im.mode, im.size
        args = im.tile[0][3] if im.tile else ""  # read before getexif, which may load the file and clear it
        rawmode = args if isinstance(args, str) else str(args[0]) if args else ""  # PNG: 'RGB;16B' for 48 bits
        if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientation that swaps the axes
            size = size[::-1]
        float_values = float_range(np.asarray(im)) if mode == "F" else None  # decodes float files alone
    change: dict = {}
    if _animated(frames, fmt_in):
        raise AnimatedImage(_animated_reason(root / source, frames, where) + ": publish a still image or leave it out")
    if fmt_in == "MPO":
        change["why"] = "MPO: the main image is published; its extra frames (depth map, preview) are dropped"
    fmt, new_suffix = FORMATS.get(suffix.lower()), None
    if fmt is None:
        fmt, new_suffix = "PNG", ".png"
        change["why"] = ("GIF holds at most 256 colours, too few to carry the noise: published as PNG"
                         if suffix.lower() == ".gif" else f"no writer for {suffix or 'files without a suffix'} "
                         "here: published as PNG")
    elif fmt_in and FORMATS.get(suffix.lower()) != fmt_in and fmt_in != "MPO":
        change["format"] = f"{fmt_in} -> {fmt}"
        change.setdefault("why", f"the content is {fmt_in} but the name says {suffix}: written as {fmt}, as "
                          "the name says")
    if mode != "RGB":
        change["mode"] = f"{mode} -> RGB"
        change.setdefault("why", WHY_MODE.get(mode, "the noise has three colour channels"))
    if ";16" in rawmode and mode == "RGB":  # a 48-bit PNG, which PIL opens as 8-bit RGB
        change["mode"] = "48-bit RGB -> 24-bit RGB"
        change.setdefault("why", "16 bits per channel are published as 8 (the noise is made in 1/255 steps)")
    if float_values:
        change["values"] = f"float read as {float_values}"
    return fmt, new_suffix, size, change


def _animated(frames: int, fmt: str | None) -> bool:
    """Several frames, other than a phone's MPO (whose main image is published, its extra frames dropped)."""
    return frames > 1 and fmt != "MPO"


def _animated_reason(path: Path, frames: int, where: str) -> str:
    return (f"{path}: animated image ({frames} frames; referenced by {where}); the noise is made for one frame "
            "and would drop the animation")


class AnimatedImage(DataError):
    """A file of several frames, which the noise (made for one frame) cannot be published in."""


def animated_sources(rows: pd.DataFrame, root: str | Path) -> dict[str, str]:
    """Each animated image among `rows` with its one-line reason: the bad samples `--on-bad-sample skip` leaves
    out, with their rows, before any compute (`plan_publication` refuses them)."""
    found = {}
    for source, where in rows.drop_duplicates("image_path")[["image_path", "where"]].itertuples(index=False):
        with Image.open(Path(root) / source) as im:
            frames, fmt = getattr(im, "n_frames", 1), im.format
        if _animated(frames, fmt):
            found[source] = _animated_reason(Path(root) / source, frames, where)
    return found


def plan_publication(rows: pd.DataFrame, root: str | Path, layout: LayoutConfig) -> PublishPlan:
    """`rows`: the dataset's checked rows as `read_dataset` gives them, in manifest order."""
    root = Path(root)
    caption_file = rows.attrs.get("caption_file")
    generic = caption_file is not None and "record" in rows
    images_dir = layout.images_dir if generic else "images"
    planned: dict[str, PlannedImage] = {}
    new_field: dict[str, str] = {}
    owner: dict[str, str] = {}
    for source, file, where in zip(rows["image_path"], rows["file"], rows["where"]):
        if source in planned:
            continue
        published = _relative(f"{images_dir}/{file}", where)
        fmt, new_suffix, size, change = _inspect(root, source, Path(file).suffix, where)
        if new_suffix:
            published = str(Path(published).with_suffix(new_suffix))
        new_field[source] = str(Path(file).with_suffix(new_suffix)) if new_suffix else file
        if published in owner:
            raise DataError(f"{root / source} and {root / owner[published]} would both be published as "
                            f"{published}; rename one of them")
        owner[published] = source
        planned[source] = PlannedImage(source, published, fmt, size, change)
    row_files = [new_field[s] for s in rows["image_path"]]
    records = None
    if generic:
        records = []
        for rec, file, value in zip(rows["record"], rows["file"], row_files):
            rec = list(rec)
            if value != file:  # renamed: the row names the published file
                rec[caption_file.image_field] = value
            records.append(rec)
    name = _relative(layout.captions_file, "captions file") if generic else "captions.csv"
    columns = ([caption_file.header[caption_file.image_field].strip(), caption_file.header[caption_file.caption_field]
                .strip()] if generic else ["image", "caption"])
    read_back = {"images_dir": images_dir, "captions_file": name, "image_column": columns[0],
                 "caption_column": columns[1]}
    return PublishPlan(list(planned.values()), row_files, records, caption_file, name, read_back)
