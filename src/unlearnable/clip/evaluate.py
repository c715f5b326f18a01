"""Clean-test retrieval evaluation: every image and caption encoded exactly once."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .encoders import Encoder
from .metrics import retrieval_metrics
from .train import PairBatches, batch_loader

EVAL_BATCH = 256  # images per encoding batch; the schema's eval.batch_size default (a test keeps them equal)


@torch.no_grad()
def encode_images(encoder: Encoder, images, rows: np.ndarray, batch_size: int = EVAL_BATCH, workers: int = 0
                  ) -> torch.Tensor:
    data = PairBatches(images, rows, torch.zeros(len(rows), 1, dtype=torch.int64))
    order = [np.arange(s, min(s + batch_size, len(rows))) for s in range(0, len(rows), batch_size)]
    return torch.cat([encoder.image(x).cpu() for x, _ in batch_loader(data, order, encoder.device, workers)])


@torch.no_grad()
def encode_texts(encoder: Encoder, tokens: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    return torch.cat([encoder.text(encoder.trim(tokens[s:s + batch_size])).cpu()
                      for s in range(0, len(tokens), batch_size)])


def evaluate_retrieval(model, images, split_rows: pd.DataFrame, tokens: torch.Tensor, device,
                       batch_size: int = EVAL_BATCH, workers: int = 0, precision: str = "auto") -> dict[str, float]:
    """`split_rows`: manifest rows of the evaluation split, aligned with `tokens`."""
    model.eval()
    encoder = Encoder(model, torch.device(device), precision)
    store_rows, text_to_image = np.unique(split_rows["image_index"].to_numpy(), return_inverse=True)
    img = encode_images(encoder, images, store_rows, batch_size, workers)
    txt = encode_texts(encoder, tokens)
    return retrieval_metrics(img @ txt.T, torch.from_numpy(text_to_image))
