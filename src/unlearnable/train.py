"""CLIP contrastive training: open_clip's loss, AdamW with no-decay groups, warmup + cosine to zero.

The same `ContrastiveTrainer.step` trains the clean baseline, the poisoned retrain and MEM's surrogate.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import open_clip
import torch

from . import ConfigError
from .image_store import to_model_input

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.2
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    warmup_fraction: float = 0.1
    max_logit_scale: float = 100.0
    amp: bool = True  # only takes effect on CUDA

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError("config key 'train': epochs must be >= 1 and batch_size >= 2")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError("config key 'train.warmup_fraction': must be in [0, 1)")


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on gains, biases, norms, embeddings' positional terms and the logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exclude = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if exclude else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.98), eps=1e-6):
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps)


def warmup_cosine(optimizer, total_steps: int, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup then cosine decay that reaches zero exactly at the last step."""
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class ContrastiveTrainer:
    def __init__(self, model: torch.nn.Module, optimizer, scheduler=None, device=torch.device("cpu"),
                 amp: bool = True, max_logit_scale: float = 100.0):
        self.model, self.optimizer, self.scheduler, self.device = model, optimizer, scheduler, device
        self.loss_fn = open_clip.ClipLoss()
        self.amp = amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if self.amp else None
        self.max_log_scale = math.log(max_logit_scale)

    def step(self, images: torch.Tensor, tokens: torch.Tensor) -> float:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)  # every step (the reference zeroes once per round)
        with torch.autocast(self.device.type, enabled=self.amp):
            img_f, txt_f, scale = self.model(images.to(self.device, non_blocking=True),
                                             tokens.to(self.device, non_blocking=True))
            loss = self.loss_fn(img_f, txt_f, scale)
        if self.scaler:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, self.max_log_scale)
        return float(loss.detach())


class PairBatches:
    """Image-caption pairs drawn from a memory-mapped image store; batches are gathered, never decoded."""

    def __init__(self, images: np.ndarray, image_rows: np.ndarray, tokens: torch.Tensor,
                 mean: tuple[float, ...], std: tuple[float, ...]):
        if len(image_rows) != len(tokens):
            raise ValueError("image_rows and tokens differ in length")
        self.images, self.image_rows, self.tokens = images, np.asarray(image_rows), tokens
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return len(self.image_rows)

    def pixels(self, idx: np.ndarray) -> torch.Tensor:
        """uint8 NHWC images of pairs `idx`."""
        return torch.from_numpy(self.images[self.image_rows[idx]])

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return to_model_input(self.pixels(idx), self.mean, self.std), self.tokens[torch.as_tensor(idx)]

    def epoch(self, batch_size: int, generator: torch.Generator) -> Iterator[np.ndarray]:
        """Shuffled, drop-last batches of pair indices (drop-last: no tiny final batch for a contrastive loss)."""
        perm = torch.randperm(len(self), generator=generator).numpy()
        for s in range(0, len(perm) - batch_size + 1, batch_size):
            yield perm[s:s + batch_size]


def train_clip(model: torch.nn.Module, data: PairBatches, cfg: TrainConfig, device: torch.device,
               generator: torch.Generator,
               on_epoch: Callable[[int, dict], None] | None = None) -> list[dict]:
    cfg.validate()
    bs = min(cfg.batch_size, len(data))
    steps_per_epoch = len(data) // bs
    total = steps_per_epoch * cfg.epochs
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), cfg.eps)
    sched = warmup_cosine(opt, total, int(cfg.warmup_fraction * total))
    trainer = ContrastiveTrainer(model, opt, sched, device, cfg.amp, cfg.max_logit_scale)
    history, t0, done = [], time.time(), 0
    log.info("training: %d pairs, batch %d, %d epochs x %d steps", len(data), bs, cfg.epochs, steps_per_epoch)
    for epoch in range(cfg.epochs):
        losses = []
        for idx in data.epoch(bs, generator):
            images, tokens = data.batch(idx)
            losses.append(trainer.step(images, tokens))
            done += 1
        elapsed = time.time() - t0
        rate = done / elapsed
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": opt.param_groups[0]["lr"],
               "logit_scale": float(model.logit_scale.detach().exp()), "steps_per_s": rate}
        history.append(row)
        log.info("epoch %d/%d loss %.4f lr %.2e | %.2f steps/s, ETA %.0fs", epoch + 1, cfg.epochs, row["loss"],
                 row["lr"], rate, (total - done) / rate)
        if on_epoch:
            on_epoch(epoch + 1, row)
    return history
