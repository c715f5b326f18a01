"""Which noise/trigger unit each training pair uses: one per pair, or one per image."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch


class Units:
    def __init__(self, train_rows: pd.DataFrame, granularity: str):
        self.granularity = granularity
        rows = train_rows.reset_index(drop=True)
        self.pair_image_row = rows["image_index"].to_numpy(np.int64)
        if granularity == "pair":
            self.unit_of_pair = np.arange(len(rows), dtype=np.int64)
            self.unit_image_row = self.pair_image_row
        else:
            self.unit_image_row, self.unit_of_pair = np.unique(self.pair_image_row, return_inverse=True)
        order = np.argsort(self.unit_of_pair, kind="stable")
        self._pairs_sorted = order
        self._first = np.searchsorted(self.unit_of_pair[order], np.arange(len(self)))
        self._count = np.bincount(self.unit_of_pair, minlength=len(self))
        self.table = pd.DataFrame({
            "unit": self.unit_of_pair,
            "image_id": rows["image_id"].to_numpy(),
            "caption_id": rows["caption_id"].to_numpy(),
        })

    def __len__(self) -> int:
        return len(self.unit_image_row)

    def pick_pairs(self, units: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """One caption pair per unit: the pair itself, or a random caption of the image."""
        if self.granularity == "pair":
            return units
        r = torch.rand(len(units), generator=generator, dtype=torch.float64).numpy()
        k = np.minimum((r * self._count[units]).astype(np.int64), self._count[units] - 1)
        return self._pairs_sorted[self._first[units] + k]
