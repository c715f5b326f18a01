"""Reading a protection (a `ProtectionDir`): what every exporter shares, without torch, so the full-size
publisher can run in a lean process."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import DataError
from ..data.folders import ProtectionDir


def protected_pixels(clean: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """uint8 + int8 noise (units of 1/255), clamped: the one definition of a protected image."""
    return np.clip(clean.astype(np.int16) + noise.astype(np.int16), 0, 255).astype(np.uint8)


def trigger_words(protection: Path) -> np.ndarray:
    """Per pair, the word of its caption the trigger goes before (0: in front; artifacts made before the
    column existed put every trigger in front)."""
    units = ProtectionDir(protection).units()
    if "trigger_word" not in units:
        return np.zeros(len(units), dtype=np.int64)
    return units["trigger_word"].to_numpy(np.int64)


def aligned_units(train_rows: pd.DataFrame, protection: Path) -> tuple[np.ndarray, str]:
    """Each training pair's unit, and the granularity the protection was made with (as it recorded it: one
    caption per image makes image units unique, which says nothing about how they were made)."""
    folder = ProtectionDir(protection)
    units = folder.units()
    if len(units) != len(train_rows) or not np.array_equal(units["caption_id"].to_numpy(),
                                                           train_rows["caption_id"].to_numpy()):
        raise DataError(f"{protection}: protection was made for different training rows than this manifest")
    return units["unit"].to_numpy(np.int64), folder.config_value("granularity")


def noise_budget(protection: Path) -> int:
    """The recorded L-inf budget (1/255) of the spatial noise plus its colour transform, as made."""
    from .config import ProtectConfig  # here: the full-size publisher imports this module without torch

    folder = ProtectionDir(protection)
    eps = int(folder.config_value("eps"))
    return eps + int(folder.record()["config"].get("colour_eps", ProtectConfig.colour_eps))  # older records: none
