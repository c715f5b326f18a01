"""Read a dataset folder in any supported layout into checked (image, caption) rows.

Layouts: the three Kaggle copies the paper's datasets come in (Flickr8k's `captions.txt`, Flickr30k's
pipe-separated `results.csv`, COCO 2017's caption JSON) and a generic `images/` + CSV. Files are located
inside nested copies (the shallowest match wins) rather than assumed at one depth.

Every reader returns rows with `image_path` (relative to the root), `image_id`, `caption` and `where`
(file and line, for messages), plus the parse problems it met; `check_rows` then decides what is kept.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import ConfigError, DataError
from .manifest import Quality, check_rows, default_ids

LAYOUTS = ("auto", "flickr8k", "flickr30k", "coco2017", "generic")
_NON_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by `surrogateescape`


@dataclass(frozen=True)
class LayoutConfig:
    """How a dataset folder is laid out; the generic fields apply to `generic` only."""

    kind: str = "auto"
    images_dir: str = "images"
    captions_file: str = "captions.csv"
    image_column: str = "image"
    caption_column: str = "caption"
    max_image_pixels: int = 89_478_485  # PIL's decompression-bomb threshold

    def __post_init__(self) -> None:
        if self.kind not in LAYOUTS:
            raise ConfigError(f"config key 'source.layout': {self.kind!r} is not one of {', '.join(LAYOUTS)}")


@dataclass(frozen=True)
class CaptionFile:
    """A generic layout's CSV header and where its image and caption fields sit in each row's `record`."""

    header: list[str]
    image_field: int
    caption_field: int


class Problems(list):
    """Parse problems as (reason, message); a list so readers can append in order."""

    def add(self, reason: str, message: str) -> None:
        self.append((reason, message))


def read_dataset(root: str | Path, layout: LayoutConfig = LayoutConfig(), on_bad_sample: str = "fail"
                 ) -> tuple[pd.DataFrame, Quality]:
    """Parse, then check every row and image; `on_bad_sample` decides between failing and skipping."""
    if on_bad_sample not in ("fail", "skip"):
        raise ConfigError(f"config key 'on_bad_sample': {on_bad_sample!r} is not one of 'fail', 'skip'")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    rows, problems = parse_layout(root, layout)
    bad = [message for reason, message in problems if reason != "repaired_row"]
    if bad and on_bad_sample == "fail":
        raise DataError(bad[0])
    rows, quality = check_rows(rows, root, on_bad_sample, layout.max_image_pixels)
    quality.rows_read += len(problems)
    for reason, message in problems:
        if reason == "repaired_row":
            quality.note(reason, message)
        else:
            quality.bad(reason, message)
    return rows, quality


def parse_layout(root: Path, layout: LayoutConfig) -> tuple[pd.DataFrame, Problems]:
    kind = detect_layout(root, layout) if layout.kind == "auto" else layout.kind
    problems = Problems()
    parse = {"flickr8k": _flickr8k, "flickr30k": _flickr30k, "coco2017": _coco2017, "generic": _generic}[kind]
    rows = parse(root, layout, problems)
    if rows.empty:
        raise DataError(f"{root}: no caption rows found in the {kind} layout")
    if "image_id" not in rows:
        rows["image_id"] = default_ids(rows["image_path"])
    read = rows.attrs.get("read", {})
    rows = rows.reset_index(drop=True)
    rows.attrs["read"] = {"kind": kind, **read}
    return rows, problems


def layout_read(rows: pd.DataFrame) -> dict:
    """The layout `read_dataset` actually read: its kind and, relative to the root, the caption files and the
    image folders, as found (not as configured: a `flickr8k` read names `captions.txt` and `Images`)."""
    return dict(rows.attrs.get("read", {}))


def _note_read(rows: pd.DataFrame, root: Path, caption_files: list[Path], image_dirs: list[str]) -> pd.DataFrame:
    rows.attrs["read"] = {"caption_files": [p.relative_to(root).as_posix() for p in caption_files],
                          "image_dirs": image_dirs}
    return rows


def detect_layout(root: Path, layout: LayoutConfig = LayoutConfig()) -> str:
    """The layout whose marker file is nearest the root; a generic CSV at the root wins outright."""
    if (root / layout.captions_file).is_file():
        return "generic"
    found = {kind: _shallowest(root, pattern) for kind, pattern in
             (("flickr8k", "captions.txt"), ("flickr30k", "results.csv"), ("coco2017", "captions_*2017.json"))}
    found = {k: p for k, p in found.items() if p is not None}
    if not found:
        raise DataError(f"{root}: no known layout found (looked for {layout.captions_file}, captions.txt, "
                        "results.csv, annotations/captions_*2017.json); set 'source.layout' and its file names")
    return min(found, key=lambda k: len(found[k].relative_to(root).parts))


def _shallowest(root: Path, pattern: str) -> Path | None:
    hits = sorted(root.rglob(pattern), key=lambda p: (len(p.parts), str(p)))
    return hits[0] if hits else None


def _require(root: Path, pattern: str, kind: str) -> Path:
    hit = _shallowest(root, pattern)
    if hit is None:
        raise DataError(f"{root}: {pattern} not found anywhere below the folder ({kind} layout)")
    return hit


def _image_dir(root: Path, names: list[str], near: Path, named_in: Path, prefer: str | None = None) -> str:
    """The folder holding the referenced files: try `near`'s tree first, then the whole root."""
    for base in (near, root):
        for name in names[:20]:  # a few names, in case the first ones are missing
            hits = [p.parent for p in base.rglob(name) if p.is_file()]
            if prefer:
                hits = [h for h in hits if h.name == prefer] or hits
            if hits:
                best = min(hits, key=lambda p: (len(p.parts), str(p)))
                return best.relative_to(root).as_posix()
    raise DataError(f"{root}: none of the images named in {named_in.name} (e.g. {names[0]}) exist below the folder")


def _lines(path: Path, problems: Problems) -> list[tuple[int, str]]:
    """(line number, text) of a text file, with non-UTF-8 lines reported instead of crashing the parse."""
    text = path.read_bytes().decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if _NON_UTF8.search(line):
            problems.add("non_utf8_text", f"{path}: row {n}: text is not valid UTF-8")
            continue
        out.append((n, line))
    return out


def _rows(paths: list[str], captions: list[str], where: list[str], ids: list[str] | None = None,
          files: list[str] | None = None) -> pd.DataFrame:
    """`files`: each image as its captions file names it (the path a published copy keeps, below `images/`)."""
    df = pd.DataFrame({"image_path": paths, "caption": [c.strip() for c in captions], "where": where,
                       "file": files if files is not None else [Path(p).name for p in paths]})
    if ids is not None:
        df["image_id"] = ids
    return df


def _flickr8k(root: Path, layout: LayoutConfig, problems: Problems) -> pd.DataFrame:
    """`captions.txt`: header `image,caption`; captions may hold commas, so split at the first comma only."""
    cap_file = _require(root, "captions.txt", "flickr8k")
    lines = _lines(cap_file, problems)
    if not lines or lines[0][1].replace(" ", "").lower() != "image,caption":
        raise DataError(f"{cap_file}: expected the header 'image,caption'")
    names, caps, where = [], [], []
    for n, line in lines[1:]:
        if not line.strip():
            continue
        name, sep, cap = line.partition(",")
        if not sep or not name.strip():
            problems.add("malformed_row", f"{cap_file}: row {n}: expected 'image,caption'")
            continue
        cap = cap.strip()
        if len(cap) >= 2 and cap[0] == cap[-1] == '"':
            cap = cap[1:-1].replace('""', '"')
        names.append(name.strip())
        caps.append(cap)
        where.append(f"{cap_file}: row {n}")
    if not names:
        return _rows([], [], [])
    folder = _image_dir(root, names, cap_file.parent, cap_file, prefer="Images")
    rows = _rows([f"{folder}/{x}" if folder != "." else x for x in names], caps, where, files=names)
    return _note_read(rows, root, [cap_file], [folder])


_FLICKR30K_REPAIRABLE = re.compile(r"^\s*(\d+)\s+(\S.*)$")


def _flickr30k(root: Path, layout: LayoutConfig, problems: Problems) -> pd.DataFrame:
    """`results.csv`: `image_name| comment_number| comment`, padded; one known row lost its second pipe."""
    cap_file = _require(root, "results.csv", "flickr30k")
    lines = _lines(cap_file, problems)
    header = [h.strip() for h in lines[0][1].split("|")] if lines else []
    if header != ["image_name", "comment_number", "comment"]:
        raise DataError(f"{cap_file}: expected the header 'image_name| comment_number| comment'")
    names, caps, where = [], [], []
    for n, line in lines[1:]:
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) == 2 and _FLICKR30K_REPAIRABLE.match(parts[1]):
            # `name| 4   caption`: the comment number and the caption share a field; split them again
            parts = [parts[0], *_FLICKR30K_REPAIRABLE.match(parts[1]).groups()]
            problems.add("repaired_row", f"{cap_file}: row {n}: missing '|' between comment number and comment")
        if len(parts) < 3 or not parts[0].strip():
            problems.add("malformed_row", f"{cap_file}: row {n}: expected 3 '|'-separated fields, got {len(parts)}")
            continue
        names.append(parts[0].strip())
        caps.append("|".join(parts[2:]))
        where.append(f"{cap_file}: row {n}")
    if not names:
        return _rows([], [], [])
    folder = _image_dir(root, names, cap_file.parent, cap_file, prefer="flickr30k_images")
    rows = _rows([f"{folder}/{x}" if folder != "." else x for x in names], caps, where, files=names)
    return _note_read(rows, root, [cap_file], [folder])


def _coco2017(root: Path, layout: LayoutConfig, problems: Problems) -> pd.DataFrame:
    """COCO caption JSON for train and val, joined; image ids are COCO's integer ids (as in the paper's list)."""
    ann_files = sorted({p for s in ("train", "val") if (p := _shallowest(root, f"captions_{s}2017.json"))})
    if not ann_files:
        raise DataError(f"{root}: captions_train2017.json / captions_val2017.json not found (coco2017 layout)")
    frames, folders = [], []
    for ann_file in ann_files:
        try:
            data = json.loads(ann_file.read_bytes())
            images = {int(im["id"]): im["file_name"] for im in data["images"]}
            anns = data["annotations"]
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{ann_file}: not a COCO caption file ({type(e).__name__}: {e})") from None
        if not images:
            continue
        split = ann_file.stem.split("_")[-1]  # train2017 | val2017
        folder = _image_dir(root, sorted(images.values()), root, ann_file, prefer=split)
        folders.append(folder)
        paths, caps, where, ids, files = [], [], [], [], []
        for k, ann in enumerate(anns):
            image_id = ann.get("image_id")
            if image_id not in images or not isinstance(ann.get("caption"), str):
                problems.add("malformed_row", f"{ann_file}: annotation {k}: unknown image_id or no caption")
                continue
            paths.append(f"{folder}/{images[image_id]}")
            files.append(images[image_id])
            caps.append(ann["caption"])
            where.append(f"{ann_file}: annotation {k}")
            ids.append(str(image_id))
        frames.append(_rows(paths, caps, where, ids, files))
    rows = pd.concat(frames, ignore_index=True) if frames else _rows([], [], [])
    return _note_read(rows, root, ann_files, folders)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def _records(text: str) -> list[tuple[int, int, list[str]]]:
    """(first line, last line, fields) of each CSV record: a quoted field may span lines."""
    reader = csv.reader(io.StringIO(text, newline=""))
    out, last = [], 0
    for rec in reader:
        out.append((last + 1, reader.line_num, rec))
        last = reader.line_num
    return out


def _swallowed(lines: list[str], first: int, last: int, n_fields: int, image_field: int) -> int | None:
    """The line number of a row that a record spanning `first`..`last` swallowed (an unbalanced quote), or None
    when its extra lines are a caption's own line breaks: a swallowed line reads alone as a whole row naming an
    image file."""
    for n in range(first + 1, last + 1):
        try:
            fields = next(csv.reader([lines[n - 1]]))
        except (csv.Error, StopIteration):
            continue
        if len(fields) == n_fields and fields[image_field].strip().lower().endswith(IMAGE_SUFFIXES):
            return n
    return None


def _generic(root: Path, layout: LayoutConfig, problems: Problems) -> pd.DataFrame:
    """A CSV of any columns. Every field of a row is published, so every field is checked (UTF-8); a row whose
    quote swallowed the rows after it is a named bad row, never a long caption."""
    cap_file = root / layout.captions_file
    if not cap_file.is_file():
        raise DataError(f"{cap_file}: captions file not found")
    text = cap_file.read_bytes().decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    try:
        records = _records(text)
    except csv.Error as e:
        raise DataError(f"{cap_file}: cannot parse captions file ({e})") from None
    if not records:
        raise DataError(f"{cap_file}: empty captions file")
    header = [h.strip() for h in records[0][2]]
    for col in (layout.image_column, layout.caption_column):
        if col not in header:
            raise DataError(f"{cap_file}: missing column {col!r} (found {header})")
    ic, cc = header.index(layout.image_column), header.index(layout.caption_column)
    lines = text.split("\n")
    names, caps, where, kept = [], [], [], []
    for first, last, rec in records[1:]:
        if not rec:
            continue
        n = f"{first}" if first == last else f"{first}-{last}"
        if len(rec) != len(header):
            problems.add("malformed_row", f"{cap_file}: row {n}: expected {len(header)} fields, got {len(rec)}")
            continue
        if (col := next((i for i, v in enumerate(rec) if _NON_UTF8.search(v)), None)) is not None:
            problems.add("non_utf8_text", f"{cap_file}: row {n}: column {header[col]!r}: text is not valid UTF-8")
            continue
        if last > first and (inner := _swallowed(lines, first, last, len(header), ic)) is not None:
            problems.add("malformed_row", f"{cap_file}: row {first}: an unbalanced quote runs over line {inner}, "
                         f"which reads as a row of its own (lines {first}-{last} would be one caption)")
            continue
        names.append(f"{layout.images_dir}/{rec[ic].strip()}".lstrip("/"))
        caps.append(rec[cc])
        where.append(f"{cap_file}: row {first}")
        kept.append(rec)
    rows = _rows(names, caps, where, files=[r[ic].strip() for r in kept])
    # every field of each row as the owner wrote it: a published copy keeps them all (see CaptionFile)
    rows["record"] = kept
    rows.attrs["caption_file"] = CaptionFile(records[0][2], ic, cc)
    return _note_read(rows, root, [cap_file], [layout.images_dir])
