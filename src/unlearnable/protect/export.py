"""Export what a data owner would publish: lossless PNGs with the noise in, captions with the trigger in.

The poisoned retrain reads this folder through the same ingest code as any dataset, so it trains on exactly
these bytes and this text (re-tokenized), not on in-memory tensors. With `pair` granularity every caption
row gets its own image file (its own noise); with `image` granularity one file per image carries all of
its captions, each with the image's trigger.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import DataError
from ..atomic import atomic_path
from ..clip.text import insert_trigger, published_caption, token_positions, tokenize
from ..data.folder import save_pngs, write_layout
from ..data.image_store import open_image_store
from ..data.folders import ProtectionDir, PublishedDir
from .artifact import aligned_units, noise_budget, protected_pixels, trigger_words
from .visibility import Visibility

log = logging.getLogger(__name__)
APPLY = ("both", "noise", "trigger")


def published_captions(train_rows: pd.DataFrame, unit_of_pair: np.ndarray, triggers: np.ndarray, tok,
                       words: np.ndarray | None = None) -> list[str]:
    """Each pair's caption with its unit's trigger before word `words[i]` (default: in front), as published."""
    words = np.zeros(len(unit_of_pair), dtype=np.int64) if words is None else words
    return [published_caption(tok, triggers[u], c, int(w))
            for u, c, w in zip(unit_of_pair, train_rows["caption"], words)]


def caption_texts(train_rows: pd.DataFrame, protection: str | Path, tok) -> list[str]:
    """Each row's caption as published with its unit's trigger (for exporters that run without the tokenizer)."""
    unit_of_pair, _ = aligned_units(train_rows.reset_index(drop=True), Path(protection))
    triggers = ProtectionDir(protection).triggers()
    return published_captions(train_rows, unit_of_pair, triggers, tok, trigger_words(Path(protection)))


def export_published(train_rows: pd.DataFrame, store_path: str | Path, protection: str | Path, apply: str, tok,
                     out_dir: str | Path, provenance: dict | None = None, workers: int = 2) -> dict:
    if apply not in APPLY:
        raise DataError(f"apply {apply!r} is not one of {APPLY}")
    protection = Path(protection)
    train_rows = train_rows.reset_index(drop=True)
    unit_of_pair, granularity = aligned_units(train_rows, protection)
    noise = ProtectionDir(protection).noise()
    triggers = ProtectionDir(protection).triggers()
    images = open_image_store(store_path)
    use_noise, use_trigger = apply in ("both", "noise"), apply in ("both", "trigger")
    if granularity == "pair":  # one file per caption row; image and cluster units give one noise per image
        names = [f"{i}__{c}.png" for i, c in zip(train_rows["image_id"], train_rows["caption_id"])]
    else:
        names = [f"{i}.png" for i in train_rows["image_id"]]
    first_pair_of_file = pd.Series(np.arange(len(names))).groupby(pd.Series(names)).min().sort_values()
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        (tmp / "images").mkdir(parents=True)
        pairs = first_pair_of_file.to_numpy()
        image_index = train_rows["image_index"].to_numpy()
        seen = Visibility()

        def chunks():
            for s in range(0, len(pairs), 1024):
                p = pairs[s:s + 1024]
                px = images[image_index[p]]
                out = protected_pixels(px, noise[unit_of_pair[p]]) if use_noise else px
                seen.add(px, out)
                yield [names[i] for i in p], out

        save_pngs(tmp / "images", chunks(), workers)
        words = trigger_words(protection)
        captions = published_captions(train_rows, unit_of_pair, triggers if use_trigger else triggers[:, :0], tok,
                                      words)
        write_layout(tmp, names, captions, images.shape[1], workers)
        # the published text must re-tokenize to the optimised trigger, where it was optimised
        clean = train_rows["caption"].tolist()
        expected = insert_trigger(tokenize(tok, clean),
                                  torch.from_numpy(triggers[unit_of_pair] if use_trigger else triggers[:, :0]),
                                  token_positions(tok, clean, words.tolist()))
        got = tokenize(tok, captions)
        roundtrip = float((got == expected).all(dim=1).float().mean())
        meta = {"apply": apply, "granularity": granularity, "files": len(pairs), "captions": len(captions),
                "trigger_roundtrip_rate": roundtrip, "eps": noise_budget(protection),
                "visibility": seen.result(), **(provenance or {})}
        PublishedDir(tmp).write_record(meta)
    log.info("published %d files, %d captions (apply=%s); trigger round-trip %.4f", len(pairs), len(captions),
             apply, roundtrip)
    return meta
