"""Gallery samples: what a data owner publishes next to the clean original, and the noise made visible."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.folders import PublishedDir
from ..data.image_store import open_image_store
from ..data.manifest import read_manifest


@dataclass
class Sample:
    clean: bytes  # PNG
    protected: bytes
    noise: bytes  # amplified: mid-grey is zero, full range is +-eps
    caption: str  # as published (with the trigger)
    original: str
    linf: int  # largest change of any pixel, in 1/255


def _png(px: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, format="PNG")
    return buf.getvalue()


def samples(published: str | Path, manifest: str | Path, store: str | Path, n: int = 3) -> list[Sample]:
    """`n` published training images (sorted by id, so every report shows the same ones) with their clean twin."""
    published = Path(published)
    meta = PublishedDir(published).export_record()  # a defended copy's: that of the folder it was made from
    eps = meta.get("eps")  # the budget the amplified noise spans; a folder published without it: its own max
    pub = read_manifest(published / "manifest.parquet")
    orig = read_manifest(manifest)
    pub_store, orig_store = open_image_store(published / "images.npy"), open_image_store(store)
    out = []
    for image_id in sorted(pub["image_id"].unique())[:n]:
        row = pub[pub["image_id"] == image_id].iloc[0]
        base, _, caption_id = image_id.partition("__")  # pair granularity names files <image>__<caption id>
        src = orig[orig["image_id"] == base]
        if src.empty:
            continue
        original = src[src["caption_id"] == int(caption_id)] if caption_id else src
        clean = orig_store[int(src["image_index"].iat[0])][0]
        protected = pub_store[int(row["image_index"])][0]
        diff = protected.astype(np.int16) - clean.astype(np.int16)
        scale = eps if eps else max(int(np.abs(diff).max()), 1)
        amplified = np.clip(127.5 + diff * (127.5 / max(scale, 1)), 0, 255).astype(np.uint8)
        out.append(Sample(_png(clean), _png(protected), _png(amplified), str(row["caption"]),
                          str((original if not original.empty else src)["caption"].iat[0]), int(np.abs(diff).max())))
    return out
