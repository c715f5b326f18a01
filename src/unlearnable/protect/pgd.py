"""Error-minimising PGD on an L-inf image noise, on the integer pixel grid.

Pixels are floats holding 0..255, the noise is in units of 1/255, and the step is a whole number of units,
so every iterate is an exact integer: the stored int8 noise is exactly what was optimised, and the image a
data owner publishes (uint8 PNG) is exactly what the surrogate saw. The loss returned stays on the device
(a 0-dim tensor): no step waits for the host. The stored noise is the effective one,
after the valid-range clamp (the reference stores it before, letting published pixels leave [0, 1]).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..clip.encoders import Encoder
from .loss import clip_loss


def error_minimizing_pgd(encoder: Encoder, x: torch.Tensor, x_adv: torch.Tensor,
                         text_features: Callable[[int], torch.Tensor], eps: int, step: int, steps: int,
                         logit_scale: torch.Tensor, first_features: torch.Tensor | None = None,
                         view: Callable[[torch.Tensor, int], torch.Tensor] | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """x, x_adv: [B,3,H,W] in 0..255 (x_adv = clean + committed noise). Returns (new effective noise in 1/255
    units, the loss at the last step).

    `text_features(t)` gives normalised text features for step t (computed without autograd).
    `first_features`: x_adv's image features already computed with autograd (HotFlip needs them too, so
    they are computed once), or None.
    `view(x_adv, t)`: what the surrogate sees of x_adv at step t (EOT); the identity when None.
    """
    loss, img = torch.tensor(math.nan), first_features
    for t in range(steps):
        if img is None:
            x_adv = x_adv.detach().requires_grad_(True)
            img = encoder.image(x_adv if view is None else view(x_adv, t))
        step_loss = _mean_loss(img, text_features(t), logit_scale)
        grad, = torch.autograd.grad(step_loss, x_adv)
        loss, img = step_loss.detach(), None
        with torch.no_grad():
            x_adv = x_adv - step * grad.sign()
            x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 255)
    return (x_adv - x).detach(), loss


def _mean_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """The CLIP loss, averaged over an ensemble's members when the features carry one ([M, B, D])."""
    return clip_loss(img, txt, logit_scale).mean()


def block_expand(block: int, size: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Low-frequency noise: a [U,3,h,w] noise at 1/block of the resolution, repeated over block x block pixel
    squares and cut to `size` (None when block is 1). Repetition keeps every pixel an exact integer."""
    if block <= 1:
        return None
    h, w = size
    return lambda z: z.repeat_interleave(block, 2).repeat_interleave(block, 3)[:, :, :h, :w]


def block_reduce(d: torch.Tensor, block: int) -> torch.Tensor:
    """A block-constant [U,3,H,W] noise back to its [U,3,ceil(H/block),ceil(W/block)] parameters."""
    return d if block <= 1 else d[:, :, ::block, ::block]


def shared_noise_pgd(encoder: Encoder, x: torch.Tensor, delta: torch.Tensor, index: torch.Tensor,
                     text_features: Callable[[int], torch.Tensor], eps: int, step: int, steps: int,
                     logit_scale: torch.Tensor,
                     view: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                     expand: Callable[[torch.Tensor], torch.Tensor] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Error-minimising PGD on noises shared by several images or pixels: image i gets expand(delta)[index[i]],
    and each step moves a shared value by the sign of the gradient summed over everything that shares it
    (cluster units share a noise between images; `expand`, e.g. `block_expand`, shares it between pixels).

    x: [B,3,H,W] in 0..255; delta: [U,3,h,w] whole numbers within +-eps. The noise is kept before the range
    clamp (images of a cluster clamp differently); a published image is clamp(x + expand(delta)), as seen here.
    """
    loss = torch.tensor(math.nan)
    for t in range(steps):
        d = delta.detach().requires_grad_(True)
        x_adv = (x + (d if expand is None else expand(d))[index]).clamp(0, 255)
        step_loss = _mean_loss(encoder.image(x_adv if view is None else view(x_adv, t)), text_features(t), logit_scale)
        grad, = torch.autograd.grad(step_loss, d)
        loss = step_loss.detach()
        with torch.no_grad():
            delta = (d - step * grad.sign()).clamp(-eps, eps)
    return delta.detach(), loss


def colour_bounds(colour_eps: int) -> torch.Tensor:
    """[2, 3] bounds of a colour transform's (gain, offset) per channel, in 1/255: they add up to colour_eps,
    the most it moves any channel of any pixel."""
    half = colour_eps // 2
    return torch.tensor([[half] * 3, [colour_eps - half] * 3], dtype=torch.float32)


def colour_shift(x: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """A smooth colour transform as a noise: per image and channel, offset + gain * (x - 127.5) / 127.5, in
    1/255 (x: [B,3,H,W] in 0..255; colour: [B,2,3] gain and offset). Rounded to whole units, as stored, with
    the gradient of the unrounded shift (straight through)."""
    gain, offset = colour[:, 0, :, None, None], colour[:, 1, :, None, None]
    shift = offset + gain * (x - 127.5) / 127.5
    return shift + (shift.round() - shift).detach()


def colour_noise_pgd(encoder: Encoder, x: torch.Tensor, delta: torch.Tensor, colour: torch.Tensor,
                     text_features: Callable[[int], torch.Tensor], eps: int, colour_eps: int, step: int, steps: int,
                     logit_scale: torch.Tensor, view: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                     expand: Callable[[torch.Tensor], torch.Tensor] | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Error-minimising PGD on two branches at once (the dual-branch idea): a per-image colour transform
    (`colour_shift`, within `colour_bounds`) and a spatial noise delta (within +-eps; `expand` as in
    `shared_noise_pgd`). Each moves by the sign of its own gradient. Returns (delta, colour, last loss); the
    image seen is clamp(x + colour_shift(x, colour) + expand(delta)), as published."""
    loss, bound = torch.tensor(math.nan), colour_bounds(colour_eps).to(x.device)
    for t in range(steps):
        d, c = delta.detach().requires_grad_(True), colour.detach().requires_grad_(True)
        x_adv = (x + colour_shift(x, c) + (d if expand is None else expand(d))).clamp(0, 255)
        step_loss = _mean_loss(encoder.image(x_adv if view is None else view(x_adv, t)), text_features(t), logit_scale)
        gd, gc = torch.autograd.grad(step_loss, [d, c])
        loss = step_loss.detach()
        with torch.no_grad():
            delta = (d - step * gd.sign()).clamp(-eps, eps)
            colour = torch.maximum(torch.minimum(c - step * gc.sign(), bound), -bound)
    return delta.detach(), colour.detach(), loss
