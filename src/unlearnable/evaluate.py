"""Clean-test retrieval evaluation: every image and caption encoded exactly once."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .image_store import to_model_input
from .metrics import retrieval_metrics
from .models import normalisation


@torch.no_grad()
def encode_images(model, images: np.ndarray, rows: np.ndarray, device, batch_size: int = 256) -> torch.Tensor:
    mean, std = normalisation(model)
    feats = []
    for s in range(0, len(rows), batch_size):
        x = to_model_input(torch.from_numpy(np.ascontiguousarray(images[rows[s:s + batch_size]])), mean, std)
        feats.append(F.normalize(model.encode_image(x.to(device)).float(), dim=-1).cpu())
    return torch.cat(feats)


@torch.no_grad()
def encode_texts(model, tokens: torch.Tensor, device, batch_size: int = 1024) -> torch.Tensor:
    feats = [F.normalize(model.encode_text(tokens[s:s + batch_size].to(device)).float(), dim=-1).cpu()
             for s in range(0, len(tokens), batch_size)]
    return torch.cat(feats)


def evaluate_retrieval(model, images: np.ndarray, split_rows: pd.DataFrame, tokens: torch.Tensor, device,
                       batch_size: int = 256) -> dict[str, float]:
    """`split_rows`: manifest rows of the evaluation split, aligned with `tokens`."""
    model.eval()
    store_rows, text_to_image = np.unique(split_rows["image_index"].to_numpy(), return_inverse=True)
    img = encode_images(model, images, store_rows, device, batch_size)
    txt = encode_texts(model, tokens, device)
    return retrieval_metrics(img @ txt.T, torch.from_numpy(text_to_image))
