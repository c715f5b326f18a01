"""Train/val/test assignment per image (never per caption, so no image leaks across splits).

`random` draws seeded counts or fractions; `paper` takes the paper's val/test image lists and leaves the
rest for training. `train_part` keeps one seeded half of the train images: a pretraining half for a clean
CLIP that a fine-tuned victim starts from, and the owner's half it then trains on (the two never share an
image). Optional caps subsample each split for quick runs, also seeded and per image.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import ConfigError, DataError
from ..paths import CONFIG_DIR
from .manifest import SPLITS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitConfig:
    kind: str = "random"  # random | paper
    val: float = 0.1  # a fraction (<1) or a number of images (>=1); for `paper`, used only without a val list
    test: float = 0.1  # random only
    seed: int = 0
    lists: str | None = None  # paper: NAME -> NAME_test.txt (+ NAME_val.txt when present) in lists_dir
    lists_dir: str = str(CONFIG_DIR / "splits")
    require_all_listed: bool = False  # paper: every listed image must exist (full datasets)
    train_part: str | None = None  # pretrain | owner: one seeded half of the train images, the other left out
    max_train_images: int | None = None
    max_val_images: int | None = None
    max_test_images: int | None = None


def normalise_id(name: str) -> str:
    """`000000000073.jpg`, `73` -> `73`; `1007320043_627395c3d8.jpg` -> `1007320043_627395c3d8`."""
    stem = Path(name.strip()).stem if "." in name else name.strip()
    return str(int(stem)) if stem.isdigit() else stem


def paper_lists(cfg: SplitConfig) -> dict[str, list[str]]:
    if not cfg.lists:
        raise ConfigError("config key 'split.lists': `kind: paper` needs the name of a split list (e.g. flickr8k)")
    out = {}
    for split in ("test", "val"):
        path = Path(cfg.lists_dir) / f"{cfg.lists}_{split}.txt"
        if path.is_file():
            out[split] = [normalise_id(x) for x in path.read_text().split()]
        elif split == "test":
            raise ConfigError(f"config key 'split.lists': {path} not found")
    return out


def assign_split(image_ids: list[str], cfg: SplitConfig) -> dict[str, str | None]:
    """image_id -> train | val | test, or None for images left out by a cap."""
    ids = sorted(set(image_ids))
    n = len(ids)
    split = np.full(n, "train", dtype=object)
    if cfg.kind == "random":
        n_test, n_val = split_count(cfg.test, n, "split.test"), split_count(cfg.val, n, "split.val")
        if n_test + n_val >= n:
            raise ConfigError(f"config keys 'split.val'/'split.test': {n_val}+{n_test} images leave none of {n} "
                              "for training")
        order = np.random.default_rng(cfg.seed).permutation(n)
        split[order[:n_test]] = "test"
        split[order[n_test:n_test + n_val]] = "val"
    elif cfg.kind == "paper":
        position = {normalise_id(x): i for i, x in enumerate(ids)}
        for name, listed in paper_lists(cfg).items():
            present = [position[x] for x in listed if x in position]
            missing = len(listed) - len(present)
            if missing and cfg.require_all_listed:
                example = next(x for x in listed if x not in position)
                raise DataError(f"{cfg.lists_dir}/{cfg.lists}_{name}.txt: {missing} of {len(listed)} listed images "
                                f"are not in the dataset (e.g. {example}); is the download complete?")
            if missing:
                log.warning("split list %s_%s: %d of %d listed images are not in the dataset", cfg.lists, name,
                            missing, len(listed))
            split[present] = name
        if "val" not in paper_lists(cfg):
            rest = np.flatnonzero(split == "train")
            n_val = split_count(cfg.val, len(rest), "split.val")
            split[rest[np.random.default_rng(cfg.seed).permutation(len(rest))[:n_val]]] = "val"
        if not (split == "test").any():
            raise DataError(f"split list {cfg.lists}: none of the listed test images is in the dataset")
        if not (split == "train").any():
            raise DataError(f"split list {cfg.lists}: no image is left for training")
    else:
        raise ConfigError(f"config key 'split.kind': {cfg.kind!r} is not one of 'random', 'paper'")
    result: dict[str, str | None] = dict(zip(ids, split))
    if cfg.train_part is not None:
        _keep_train_part(result, ids, cfg)
    for k, name in enumerate(SPLITS):
        cap = getattr(cfg, f"max_{name}_images")
        members = [i for i in ids if result[i] == name]
        if cap is not None and len(members) > cap:
            drop = np.random.default_rng([cfg.seed, k]).permutation(len(members))[cap:]
            for j in drop:
                result[members[j]] = None
    return result


TRAIN_PARTS = ("pretrain", "owner")


def _keep_train_part(result: dict[str, str | None], ids: list[str], cfg: SplitConfig) -> None:
    """Both halves come from one seeded permutation of the train images, so that `pretrain` and `owner` with
    the same seed are disjoint and together are the whole train split; val and test stay as they are."""
    if cfg.train_part not in TRAIN_PARTS:
        raise ConfigError(f"config key 'split.train_part': {cfg.train_part!r} is not one of "
                          f"{', '.join(map(repr, TRAIN_PARTS))}")
    train = [i for i in ids if result[i] == "train"]
    order = np.random.default_rng([cfg.seed, 2]).permutation(len(train))
    cut = (len(train) + 1) // 2
    left_out = order[cut:] if cfg.train_part == "pretrain" else order[:cut]
    for j in left_out:
        result[train[j]] = None


def split_count(x: float, n: int, key: str) -> int:
    """Images in a split of n: a fraction (<1) or a count (>=1)."""
    if x < 0:
        raise ConfigError(f"config key '{key}': must be >= 0, got {x}")
    return int(round(x * n)) if x < 1 else int(x)
