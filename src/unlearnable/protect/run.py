"""Produce a protection artifact for the training split of a dataset.

Artifact folder: `noise.npy` (int8 [units, H, W, 3], units of 1/255, added to the uint8 image store),
`triggers.npy` (int64 [units, k] CLIP token ids), `colour.npy` (float32 [units, 2, 3]: each unit's colour
transform, gain and offset per channel in 1/255, when the method has one; the noise already holds it),
`units.parquet` (per pair: unit, image_id, caption_id, and
trigger_word, the word of the caption its trigger goes before) and `protection.json` (config, seed,
timings, per-round losses, versions).
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import ConfigError
from ..atomic import atomic_path
from ..clip.encoders import Encoder
from ..clip.models import ModelSpec, create_model, image_resolution, tokenizer, weights_digest
from ..clip.text import token_positions, tokenize, trigger_vocabulary
from ..data.folders import ProtectionDir
from ..data.image_store import open_image_store
from ..data.rowfile import RowFile
from ..provenance import configure_determinism, resolve_device, seed_everything, versions
from .config import ProtectConfig
from .engine import ProtectData, Protector
from .pgd import colour_bounds, colour_shift
from .trigger_words import common_word_vocabulary, inside_positions
from .units import Units

log = logging.getLogger(__name__)


def place(src: Path, dst: Path) -> None:
    """Put the finished noise file into the output without a second copy on disk: a hard link, so the work
    folder stays consistent (and resumable) until the output is committed, then the work folder goes.
    Across filesystems, where no link is possible, it is copied."""
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copyfile(src, dst)


def _random_noise(noise: RowFile, images, units: Units, cfg: ProtectConfig, gen: torch.Generator):
    """The random control at the method's budget: uniform whole-unit noise within +-eps (constant over
    noise_block squares), plus, with colour_eps, a uniform random colour transform within its bounds.
    Returns the colour transforms (or None)."""
    shape, colour = noise.shape, None
    b, (h, w) = cfg.noise_block, shape[1:3]
    if cfg.colour_eps:
        bound = colour_bounds(cfg.colour_eps)
        colour = ((torch.rand(len(units), 2, 3, generator=gen, dtype=torch.float64) * 2 - 1) * bound).round().float()
    for s in range(0, len(units), 4096):
        idx = np.arange(s, min(s + 4096, len(units)))
        low = torch.randint(-cfg.eps, cfg.eps + 1, (len(idx), -(-h // b), -(-w // b), 3), generator=gen,
                            dtype=torch.int16).numpy()
        rows = low.repeat(b, 1).repeat(b, 2)[:, :h, :w]  # b = 1: per-pixel noise
        if colour is not None:
            x = torch.from_numpy(images[units.pair_image_row[units.first_pair(idx)]]).permute(0, 3, 1, 2).float()
            rows = rows + colour_shift(x, colour[idx]).permute(0, 2, 3, 1).to(torch.int16).numpy()
        noise.write(idx, rows)
    return colour


def protect(train_rows: pd.DataFrame, store_path: str | Path, surrogate: ModelSpec | list[ModelSpec],
            cfg: ProtectConfig, seed: int,
            device: str, out_dir: str | Path, workdir: str | Path | None = None,
            extra_meta: dict | None = None, progress: bool = False, precision: str = "auto") -> dict:
    """`surrogate`: one model, or a list of models protected against at once (an ensemble: the loss averaged
    over them; image protections only). `extra_meta` (e.g. the MLflow run id) goes into protection.json,
    which is written once, complete."""
    cfg.validate()
    members = list(surrogate) if isinstance(surrogate, (list, tuple)) else [surrogate]  # MEM: refused by Protector
    if len({image_resolution(m.name) for m in members}) > 1:
        raise ConfigError("surrogates of an ensemble must share an input resolution, not "
                          + ", ".join(f"{m.name} {image_resolution(m.name)} px" for m in members))
    out_dir = Path(out_dir)
    workdir = Path(workdir) if workdir else out_dir.with_name(out_dir.name + ".work")
    dev = resolve_device(device)
    configure_determinism(dev)
    seed_everything(seed)
    images = open_image_store(store_path)
    units = Units(train_rows, cfg.granularity, cfg.clusters, seed)
    tok = tokenizer(members[0].name)  # open_clip's one tokenizer (tests/test_models.py)
    captions = train_rows["caption"].tolist()
    vocab = common_word_vocabulary(tok, cfg.common_words, captions) if cfg.common_words else trigger_vocabulary(tok)
    gen = torch.Generator().manual_seed(seed)
    words = inside_positions(captions, torch.Generator().manual_seed(seed + 1)) if cfg.trigger_position == "inside" \
        else np.zeros(len(captions), dtype=np.int64)  # its own stream: the paper's runs keep theirs
    units.table["trigger_word"] = words
    t0 = time.time()
    history: list[dict] = []
    start_digest = None
    shape = (len(units),) + images.shape[1:]
    workdir.mkdir(parents=True, exist_ok=True)
    log.info("%s: %d units (%s granularity) from %d pairs, eps %d/255, k=%d", cfg.method, len(units),
             cfg.granularity, len(train_rows), cfg.eps, cfg.trigger_len)
    if cfg.optimises:
        data = ProtectData(images, units, tokenize(tok, captions), vocab,
                           token_positions(tok, captions, words.tolist()))
        models = [create_model(m) for m in members]
        digests = [weights_digest(m) for m in models]  # what each surrogate starts from: a checkpoint, a tag, scratch
        start_digest = digests[0] if len(digests) == 1 else digests
        encoders = [Encoder(m, dev, precision) for m in models]
        protector = Protector(cfg, encoders[0] if len(encoders) == 1 else encoders, data, workdir, seed,
                              progress=progress)
        protector.run()
        noise_file, triggers, history = protector.noise_path, protector.triggers, protector.history
        colour = protector.colour
    else:
        noise_file = workdir / "noise_random.npy"
        noise = RowFile.create(noise_file, shape, np.int8)
        colour = None
        if cfg.kind.noise == "random":
            colour = _random_noise(noise, images, units, cfg, gen)
        noise.close()
        triggers = vocab[torch.randint(len(vocab), (len(units), cfg.trigger_len), generator=gen)]
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        folder = ProtectionDir(tmp)
        place(noise_file, folder.noise_path)
        np.save(folder.triggers_path, triggers.numpy().astype(np.int64))
        if colour is not None:
            np.save(folder.colour_path, colour.numpy().astype(np.float32))
        units.table.to_parquet(folder.units_path, index=False)
        meta = {"config": asdict(cfg),
                "surrogate": asdict(members[0]) if len(members) == 1 else [asdict(m) for m in members],
                "surrogate_start_sha256": start_digest,
                "seed": seed, "device": str(dev),
                "units": len(units), "pairs": len(train_rows), "noise_shape": list(shape),
                "noise_units": "1/255, int8, added to the uint8 NHWC image store then clamped to [0, 255]",
                "trigger_vocabulary": len(vocab), "history": history, "seconds": time.time() - t0,
                "versions": versions(dev, precision), **(extra_meta or {})}
        folder.write_record(meta)
    shutil.rmtree(workdir, ignore_errors=True)
    return meta
