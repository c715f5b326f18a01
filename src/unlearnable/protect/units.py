"""Which noise/trigger unit each training pair uses: one per pair, one per image, or one per cluster of
images with similar captions (shared noise, as in Unlearnable Clusters)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch


def caption_clusters(image_of_pair: np.ndarray, captions: list[str], k: int, seed: int = 0, dims: int = 1024,
                     iterations: int = 25) -> np.ndarray:
    """Cluster id per image (indexed like np.unique(image_of_pair)): spherical k-means on the hashed bag of
    words of each image's captions. Deterministic: a fixed hash (crc32) and a seeded farthest-point start."""
    import zlib

    images, inverse = np.unique(image_of_pair, return_inverse=True)
    bags = np.zeros((len(images), dims), dtype=np.float32)
    for img, caption in zip(inverse, captions):
        for word in caption.lower().split():
            bags[img, zlib.crc32(word.encode()) % dims] += 1.0
    bags /= np.maximum(np.linalg.norm(bags, axis=1, keepdims=True), 1e-12)
    k = min(k, len(images))
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(images)))]  # farthest-point start: spread over the caption space
    closest = bags @ bags[chosen[0]]
    for _ in range(k - 1):
        chosen.append(int(np.argmin(closest)))
        closest = np.maximum(closest, bags @ bags[chosen[-1]])
    centres = bags[chosen].copy()
    labels = np.zeros(len(images), dtype=np.int64)
    for _ in range(iterations):
        labels = np.argmax(bags @ centres.T, axis=1)
        for c in range(k):
            members = bags[labels == c]
            centres[c] = members.sum(0) if len(members) else bags[rng.integers(len(images))]
        centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    _, labels = np.unique(labels, return_inverse=True)  # no empty cluster ids
    return labels.astype(np.int64)


class Units:
    def __init__(self, train_rows: pd.DataFrame, granularity: str, clusters: int = 0, seed: int = 0):
        self.granularity = granularity
        rows = train_rows.reset_index(drop=True)
        self.pair_image_row = rows["image_index"].to_numpy(np.int64)
        if granularity == "pair":
            self.unit_of_pair = np.arange(len(rows), dtype=np.int64)
        elif granularity == "cluster":
            images, image_of_pair = np.unique(self.pair_image_row, return_inverse=True)
            cluster_of_image = caption_clusters(self.pair_image_row, rows["caption"].tolist(), clusters, seed)
            self.unit_of_pair = cluster_of_image[image_of_pair]
            self.images, self.cluster_of_image = images, cluster_of_image
        else:
            _, self.unit_of_pair = np.unique(self.pair_image_row, return_inverse=True)
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
        return int(self.unit_of_pair.max()) + 1 if len(self.unit_of_pair) else 0

    def pick_image_pairs(self, image_positions: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """One random caption pair per image (positions in `self.images`; cluster granularity)."""
        if not hasattr(self, "_img_sorted"):
            _, image_of_pair = np.unique(self.pair_image_row, return_inverse=True)
            self._img_sorted = np.argsort(image_of_pair, kind="stable")
            self._img_first = np.searchsorted(image_of_pair[self._img_sorted], np.arange(len(self.images)))
            self._img_count = np.bincount(image_of_pair, minlength=len(self.images))
        r = torch.rand(len(image_positions), generator=generator, dtype=torch.float64).numpy()
        count = self._img_count[image_positions]
        k = np.minimum((r * count).astype(np.int64), count - 1)
        return self._img_sorted[self._img_first[image_positions] + k]

    def first_pair(self, units: np.ndarray) -> np.ndarray:
        """The first pair of each unit (its image, for pair and image units)."""
        return self._pairs_sorted[self._first[units]]

    def pick_pairs(self, units: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """One caption pair per unit: the pair itself, or a random caption of the image."""
        if self.granularity == "pair":
            return units
        r = torch.rand(len(units), generator=generator, dtype=torch.float64).numpy()
        k = np.minimum((r * self._count[units]).astype(np.int64), self._count[units] - 1)
        return self._pairs_sorted[self._first[units] + k]
