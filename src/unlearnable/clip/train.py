"""CLIP contrastive training: open_clip's loss, AdamW with no-decay groups, warmup + cosine to zero.

The same `ContrastiveTrainer.step` trains the clean baseline, the poisoned retrain and MEM's surrogate.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import open_clip
import torch

from .. import ConfigError
from .encoders import Encoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8  # the workflow's defaults are the schema's (config/schema.yaml), and a test keeps them equal
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.2
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    warmup_fraction: float = 0.1
    max_logit_scale: float = 100.0
    precision: str = "auto"  # bf16 autocast: auto (on CUDA), bf16 (anywhere), fp32 (never); the config's top level
    workers: int = 0  # DataLoader workers gathering batches ahead (0: in the training process)
    augment_scale_min: float | None = None  # random-resized-crop (area >= this) + flip while training; None: off

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
    """One optimiser step of the CLIP loss. Under bf16 autocast (CUDA by default), whose range needs no loss
    scaling, so the step's whole state is the model, the optimiser and the scheduler (no GradScaler to
    checkpoint for an exact resume)."""

    def __init__(self, encoder: Encoder, optimizer, scheduler=None, max_logit_scale: float = 100.0):
        self.encoder, self.model = encoder, encoder.model
        self.optimizer, self.scheduler = optimizer, scheduler
        self.loss_fn = open_clip.ClipLoss()
        self.max_log_scale = math.log(max_logit_scale)

    def step(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """images: uint8 NHWC or float NCHW in 0..255, on any device. Returns the loss, detached and left on the
        device: reading it here would make the host wait for every step (callers read a round's at once)."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)  # every step (the reference zeroes once per round)
        loss = self.loss_fn(self.encoder.image(images), self.encoder.text(tokens), self.model.logit_scale.exp())
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, self.max_log_scale)
        return loss.detach()


def crop_boxes(n: int, h: int, w: int, generator: torch.Generator, scale_min: float) -> list[tuple]:
    """torchvision's RandomResizedCrop rule per image: up to 10 draws of an area in [scale_min, 1] and an
    aspect in [3/4, 4/3] until the box fits, else the whole image; and a horizontal flip with probability
    1/2. Returns (top, left, height, width, flip) per image."""
    draws = torch.rand(n, 10, 4, generator=generator, dtype=torch.float64)
    flips = torch.rand(n, generator=generator, dtype=torch.float64)
    lo, hi = math.log(3 / 4), math.log(4 / 3)
    out = []
    for i in range(n):
        top, left, ch, cw = 0, 0, h, w
        for a, b, c, d in draws[i].tolist():
            area, ratio = h * w * (scale_min + (1 - scale_min) * a), math.exp(lo + (hi - lo) * b)
            bw, bh = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < bw <= w and 0 < bh <= h:
                top, left, ch, cw = int(c * (h - bh + 1)), int(d * (w - bw + 1)), bh, bw
                break
        out.append((top, left, ch, cw, bool(flips[i] < 0.5)))
    return out


def random_resized_crop_flip(images: torch.Tensor, generator: torch.Generator, scale_min: float) -> torch.Tensor:
    """uint8 NHWC -> uint8 NHWC: each image's `crop_boxes` box resized back bilinearly, then flipped or not."""
    n, h, w, _ = images.shape
    out = torch.empty_like(images)
    for i, (top, left, ch, cw, flip) in enumerate(crop_boxes(n, h, w, generator, scale_min)):
        crop = images[i, top:top + ch, left:left + cw]
        if (ch, cw) != (h, w):
            crop = torch.nn.functional.interpolate(crop.permute(2, 0, 1)[None].float(), size=(h, w), mode="bilinear",
                                                   align_corners=False, antialias=True)[0].permute(1, 2, 0)
            crop = crop.round().clamp(0, 255).to(torch.uint8)
        out[i] = crop.flip(1) if flip else crop
    return out


class PairBatches:
    """Image-caption pairs drawn from a row-addressed image store; batches are gathered, never decoded."""

    def __init__(self, images, image_rows: np.ndarray, tokens: torch.Tensor):
        if len(image_rows) != len(tokens):
            raise ValueError("image_rows and tokens differ in length")
        self.images, self.image_rows, self.tokens = images, np.asarray(image_rows), tokens

    def __len__(self) -> int:
        return len(self.image_rows)

    def pixels(self, idx: np.ndarray) -> torch.Tensor:
        """uint8 NHWC images of pairs `idx`."""
        return torch.from_numpy(np.ascontiguousarray(self.images[self.image_rows[idx]]))

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pixels(idx), self.tokens[torch.as_tensor(idx)]

    def epoch(self, batch_size: int, generator: torch.Generator) -> list[np.ndarray]:
        """Shuffled, drop-last batches of pair indices (drop-last: no tiny final batch for a contrastive loss)."""
        perm = torch.randperm(len(self), generator=generator).numpy()
        return [perm[s:s + batch_size] for s in range(0, len(perm) - batch_size + 1, batch_size)]


class _Batches(torch.utils.data.Dataset):
    """Item i is batch i of an order the main process drew, so workers never change the order."""

    def __init__(self, data: PairBatches, order: list[np.ndarray]):
        self.data, self.order = data, order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int):
        return self.data.batch(self.order[i])


def batch_loader(data: PairBatches, order: list[np.ndarray], device: torch.device, workers: int = 0):
    """Batches in `order`; with workers they are gathered ahead, pinned when the device is a GPU."""
    if workers <= 0:
        return (data.batch(idx) for idx in order)
    return torch.utils.data.DataLoader(_Batches(data, order), batch_size=None, shuffle=False,
                                       num_workers=workers, pin_memory=device.type == "cuda",
                                       persistent_workers=False, prefetch_factor=2)


def mean_loss(losses: list[torch.Tensor]) -> float:
    """The mean of losses kept on the device: one host read for all of them (NaN for none)."""
    return float(torch.stack(losses).float().mean()) if losses else float("nan")


def _fingerprint(cfg: "TrainConfig", data: PairBatches) -> dict:
    """What a checkpoint must match to be resumed: the settings and the data's size and order of rows."""
    import hashlib
    from dataclasses import asdict

    return {"train": asdict(cfg), "pairs": len(data),
            "rows": hashlib.sha256(np.ascontiguousarray(data.image_rows).tobytes()).hexdigest()}


def _save_checkpoint(path: Path, state: dict) -> None:
    """Committed whole or not at all (write aside, then rename), like the protection's rounds."""
    from ..atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)


def train_clip(model: torch.nn.Module, data: PairBatches, cfg: TrainConfig, device: torch.device,
               generator: torch.Generator,
               on_epoch: Callable[[int, dict], None] | None = None,
               checkpoint: str | Path | None = None) -> list[dict]:
    """`checkpoint`: a file the model, optimiser, schedule, generator and history are committed to after every
    epoch; a run that finds one made with the same settings and data resumes after its epoch, so a job killed
    at its wall time (and retried) loses at most one epoch. On the CPU the result is bit-identical to an
    uninterrupted run. The caller removes it once the model is saved."""
    cfg.validate()
    bs = min(cfg.batch_size, len(data))
    steps_per_epoch = len(data) // bs
    total = steps_per_epoch * cfg.epochs
    encoder = Encoder(model, device, cfg.precision)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), cfg.eps)
    sched = warmup_cosine(opt, total, int(cfg.warmup_fraction * total))
    trainer = ContrastiveTrainer(encoder, opt, sched, cfg.max_logit_scale)
    history, t0, done, start = [], time.time(), 0, 0
    fingerprint = _fingerprint(cfg, data)
    checkpoint = Path(checkpoint) if checkpoint else None
    if checkpoint is not None and checkpoint.exists():
        s = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if s.get("fingerprint") == fingerprint:
            model.load_state_dict(s["model"])
            opt.load_state_dict(s["optimizer"])
            sched.load_state_dict(s["scheduler"])
            generator.set_state(s["generator"])
            history, start = list(s["history"]), int(s["epoch"])
            done = start * steps_per_epoch
            log.info("resumed from %s after epoch %d/%d", checkpoint, start, cfg.epochs)
        else:
            log.warning("%s was made with other settings or data: training from the start", checkpoint)
    resumed_steps = done
    log.info("training: %d pairs, batch %d, %d epochs x %d steps", len(data), bs, cfg.epochs, steps_per_epoch)
    for epoch in range(start, cfg.epochs):
        losses = []
        for images, tokens in batch_loader(data, data.epoch(bs, generator), device, cfg.workers):
            if cfg.augment_scale_min is not None:
                images = random_resized_crop_flip(images, generator, cfg.augment_scale_min)
            losses.append(trainer.step(images, encoder.trim(tokens)))
            done += 1
        elapsed = time.time() - t0
        rate = (done - resumed_steps) / elapsed
        row = {"epoch": epoch + 1, "loss": mean_loss(losses), "lr": opt.param_groups[0]["lr"],
               "logit_scale": float(model.logit_scale.detach().exp()), "steps_per_s": rate}
        history.append(row)
        if checkpoint is not None and epoch + 1 < cfg.epochs:
            _save_checkpoint(checkpoint, {"fingerprint": fingerprint, "epoch": epoch + 1, "history": history,
                                          "model": model.state_dict(), "optimizer": opt.state_dict(),
                                          "scheduler": sched.state_dict(), "generator": generator.get_state()})
        log.info("epoch %d/%d loss %.4f lr %.2e | %.2f steps/s, ETA %.0fs", epoch + 1, cfg.epochs, row["loss"],
                 row["lr"], rate, (total - done) / rate)
        if on_epoch:
            on_epoch(epoch + 1, row)
    return history
