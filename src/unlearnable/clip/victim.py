"""The victim stage, shared by the workflow's train and evaluate jobs and by `unlearnable verify`: a CLIP trained
on a folder's rows, then read on clean test rows. One road, so a fix to either reaches both front-ends."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from ..provenance import seed_everything
from .evaluate import EVAL_BATCH, evaluate_retrieval
from .models import ModelSpec, create_model, tokenizer
from .text import tokenize
from .train import PairBatches, TrainConfig, train_clip


def caption_tokens(spec: ModelSpec, captions: list[str]) -> torch.Tensor:
    return tokenize(tokenizer(spec.name), captions)


def victim_data(rows: pd.DataFrame, store, spec: ModelSpec) -> PairBatches:
    return PairBatches(store, rows["image_index"].to_numpy(), caption_tokens(spec, rows["caption"].tolist()))


def train_victim(rows: pd.DataFrame, store, spec: ModelSpec, cfg: TrainConfig, seed: int, device: torch.device,
                 on_epoch: Callable[[int, dict], None] | None = None,
                 checkpoint: str | Path | None = None) -> tuple[torch.nn.Module, list[dict]]:
    """A CLIP from `spec`'s start (scratch or its checkpoint), trained on `rows` of the image `store`; the
    model, and its history by epoch. The seed fixes its initialisation and its data order."""
    generator = seed_everything(seed)
    model = create_model(spec)
    history = train_clip(model, victim_data(rows, store, spec), cfg, device, generator, on_epoch=on_epoch,
                         checkpoint=checkpoint)
    return model, history


def evaluate_victim(model: torch.nn.Module, spec: ModelSpec, rows: pd.DataFrame, store, device: torch.device,
                    batch_size: int = EVAL_BATCH, workers: int = 0, precision: str = "auto",
                    tokens: torch.Tensor | None = None) -> dict[str, float]:
    """Retrieval on clean test `rows` (each image and caption encoded once). `tokens`: the rows' captions
    already tokenized, for a caller that reads several victims on one test set."""
    if tokens is None:
        tokens = caption_tokens(spec, rows["caption"].tolist())
    return evaluate_retrieval(model, store, rows, tokens, device, batch_size, workers, precision)
