"""Reading a protection artifact (`noise.npy`, `triggers.npy`, `units.parquet`, `protection.json`): what
every exporter shares, without torch, so the full-size publisher can run in a lean process."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import DataError


def protected_pixels(clean: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """uint8 + int8 noise (units of 1/255), clamped: the one definition of a protected image."""
    return np.clip(clean.astype(np.int16) + noise.astype(np.int16), 0, 255).astype(np.uint8)


def trigger_words(protection: Path) -> np.ndarray:
    """Per pair, the word of its caption the trigger goes before (0: in front; artifacts made before the
    column existed put every trigger in front)."""
    units = pd.read_parquet(protection / "units.parquet")
    if "trigger_word" not in units:
        return np.zeros(len(units), dtype=np.int64)
    return units["trigger_word"].to_numpy(np.int64)


def aligned_units(train_rows: pd.DataFrame, protection: Path) -> tuple[np.ndarray, str]:
    """Each training pair's unit, and the granularity the protection was made with (as it recorded it: one
    caption per image makes image units unique, which says nothing about how they were made)."""
    units = pd.read_parquet(protection / "units.parquet")
    if len(units) != len(train_rows) or not np.array_equal(units["caption_id"].to_numpy(),
                                                           train_rows["caption_id"].to_numpy()):
        raise DataError(f"{protection}: protection was made for different training rows than this manifest")
    try:
        granularity = json.loads((protection / "protection.json").read_text())["config"]["granularity"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{protection / 'protection.json'}: no recorded granularity ({type(e).__name__})") from None
    return units["unit"].to_numpy(np.int64), granularity


def noise_budget(protection: Path) -> int:
    """The recorded L-inf budget (1/255) of the spatial noise plus its colour transform, as made."""
    try:
        config = json.loads((protection / "protection.json").read_text())["config"]
        return int(config["eps"]) + int(config.get("colour_eps", 0))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{protection / 'protection.json'}: no recorded eps ({type(e).__name__})") from None
