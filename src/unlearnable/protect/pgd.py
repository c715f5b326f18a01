"""Error-minimising PGD on an L-inf image noise, on the integer pixel grid.

Pixels are floats holding 0..255, the noise is in units of 1/255, and the step is a whole number of units,
so every iterate is an exact integer: the stored int8 noise is exactly what was optimised, and the image a
data owner publishes (uint8 PNG) is exactly what the surrogate saw. The stored noise is the effective one,
after the valid-range clamp (the reference stores it before, letting published pixels leave [0, 1]).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..image_store import to_model_input
from .loss import clip_loss


def error_minimizing_pgd(model, x: torch.Tensor, delta: torch.Tensor, text_features: Callable[[int], torch.Tensor],
                         eps: int, step: int, steps: int, mean, std, logit_scale: torch.Tensor) -> torch.Tensor:
    """x: [B,3,H,W] in 0..255; delta: same shape, units of 1/255; returns the new effective delta.

    `text_features(t)` gives normalised text features for step t (computed without autograd).
    """
    x_adv = (x + delta).clamp(0, 255)
    for t in range(steps):
        txt = text_features(t)
        x_adv.requires_grad_(True)
        img = F.normalize(model.encode_image(to_model_input(x_adv, mean, std)), dim=-1)
        grad, = torch.autograd.grad(clip_loss(img, txt, logit_scale), x_adv)
        with torch.no_grad():
            x_adv = x_adv - step * grad.sign()
            x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 255)
    return (x_adv - x).detach()
