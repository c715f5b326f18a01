"""Retrieval metrics for image<->text, any number of captions per image, fully vectorised.

Rank convention: 1 + the number of *wrong* candidates scoring at least as high as the best correct one.
Ties therefore count against the model, so a collapsed model (all scores equal) scores chance-or-worse,
never a perfect recall.
"""
from __future__ import annotations

import numpy as np
import torch

KS = (1, 5, 10)


def ranks_i2t(sim: torch.Tensor, text_to_image: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """sim [n_images, n_texts]; rank of each image's best-scoring correct caption."""
    n_img = sim.shape[0]
    out = torch.empty(n_img, dtype=torch.int64)
    for s in range(0, n_img, chunk):
        block = sim[s:s + chunk]
        correct = text_to_image.view(1, -1) == torch.arange(s, s + len(block)).view(-1, 1)
        best = block.masked_fill(~correct, float("-inf")).max(dim=1).values
        wrong_ge = ((block >= best.view(-1, 1)) & ~correct).sum(dim=1)
        out[s:s + len(block)] = 1 + wrong_ge
    return out


def ranks_t2i(sim: torch.Tensor, text_to_image: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Rank of each caption's own image among all images."""
    n_txt = sim.shape[1]
    out = torch.empty(n_txt, dtype=torch.int64)
    for s in range(0, n_txt, chunk):
        block = sim[:, s:s + chunk].T  # [texts, images]
        own = text_to_image[s:s + chunk]
        score = block.gather(1, own.view(-1, 1))
        out[s:s + len(block)] = (block >= score).sum(dim=1)  # counts itself once: 1 + wrong >= own
    return out


def chance_i2t(captions_per_image: np.ndarray, n_texts: int, k: int) -> float:
    """P(at least one of an image's c captions lands in the top k of a random ranking), averaged."""
    c = np.asarray(captions_per_image, dtype=np.float64)
    # 1 - C(n-c, k)/C(n, k) = 1 - prod_{j<k} (n-c-j)/(n-j)
    j = np.arange(min(k, n_texts))
    miss = np.prod(np.clip((n_texts - c[:, None] - j) / (n_texts - j), 0, 1), axis=1)
    return float(np.mean(1 - miss) * 100)


def retrieval_metrics(sim: torch.Tensor, text_to_image: torch.Tensor) -> dict[str, float]:
    sim = sim.float().cpu()
    text_to_image = text_to_image.long().cpu()
    n_img, n_txt = sim.shape
    r_i2t = ranks_i2t(sim, text_to_image)
    r_t2i = ranks_t2i(sim, text_to_image)
    cpi = np.bincount(text_to_image.numpy(), minlength=n_img)
    out: dict[str, float] = {}
    for k in KS:
        out[f"i2t_r{k}"] = float((r_i2t <= k).float().mean() * 100)
        out[f"t2i_r{k}"] = float((r_t2i <= k).float().mean() * 100)
        out[f"chance_i2t_r{k}"] = chance_i2t(cpi, n_txt, k)
        out[f"chance_t2i_r{k}"] = min(k, n_img) / n_img * 100
    out["i2t_medr"] = float(np.median(r_i2t.numpy()))
    out["t2i_medr"] = float(np.median(r_t2i.numpy()))
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in KS)
    out["chance_rsum"] = sum(out[f"chance_{d}_r{k}"] for d in ("i2t", "t2i") for k in KS)
    out["n_images"], out["n_texts"] = float(n_img), float(n_txt)
    return out
