"""Expectation over a scraper's transforms (EOT): noise optimised to survive the image defences.

Each PGD step (and each surrogate step) sees its batch through one transform drawn from the identity and the
configured image defences (a chain such as `scraper` counts as one). The forward pass applies the defence's
image steps themselves (`defences.Defence.image`, the very code a defended folder is made with) to the
rounded uint8 images; the backward pass treats them as the identity (BPDA, Athalye et al. 2018), which is
what lets a non-differentiable JPEG round trip be optimised through. A chain's training augmentation is
then applied as the victim's training applies it (`clip.train.crop_boxes`: random-resized-crop and flip),
but differentiably, so the gradient follows each pixel to where the crop put it.
"""
from __future__ import annotations

import numpy as np
import torch

import torch.nn.functional as F

from .. import ConfigError
from ..clip.train import crop_boxes
from ..defend.defences import IMAGE_KINDS, Defence


class ScraperTransforms:
    def __init__(self, specs: tuple[dict, ...] = ()):
        self.defences = [Defence.from_config(f"eot[{i}]", dict(s), key=f"method eot[{i}]") for i, s in enumerate(specs)]
        for i, d in enumerate(self.defences):
            if not d.changes_images and d.augment_scale_min is None:
                raise ConfigError(f"method: eot[{i}] kind {specs[i].get('kind')!r} changes no image (give an image "
                                  f"defence, one of {IMAGE_KINDS}, augment, or a chain with one)")

    def __bool__(self) -> bool:
        return bool(self.defences)

    def draw(self, n: int, gen: torch.Generator) -> list[Defence | None]:
        """n transforms, each the identity (None) or a defence with equal chance. Draws nothing from `gen`
        when there are no defences, so a run without EOT keeps its random stream."""
        if not self.defences:
            return [None] * n
        picks = torch.randint(len(self.defences) + 1, (n,), generator=gen).tolist()
        return [None if p == 0 else self.defences[p - 1] for p in picks]

    @staticmethod
    def apply(x: torch.Tensor, defence: Defence | None, gen: torch.Generator | None = None) -> torch.Tensor:
        """x: [B,3,H,W] floats in 0..255. The defended images, with the gradient passed straight through the
        image steps; a chain's augmentation draws its crops from `gen`."""
        if defence is None:
            return x
        if defence.changes_images:
            imgs = x.detach().round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            out = np.stack([defence.image(img) for img in imgs])
            y = torch.from_numpy(out).to(x.device).permute(0, 3, 1, 2).float()
            x = x + (y - x).detach()
        if defence.augment_scale_min is not None:
            if gen is None:
                raise ValueError("EOT through training augmentation needs a generator for its crops")
            x = crop_flip(x, gen, defence.augment_scale_min)
        return x


def crop_flip(x: torch.Tensor, gen: torch.Generator, scale_min: float) -> torch.Tensor:
    """The victim's random-resized-crop and flip (its very boxes, `crop_boxes`) on [B,3,H,W] floats, kept
    differentiable: bilinear resize without rounding."""
    n, _, h, w = x.shape
    out = []
    for i, (top, left, ch, cw, flip) in enumerate(crop_boxes(n, h, w, gen, scale_min)):
        crop = x[i:i + 1, :, top:top + ch, left:left + cw]
        if (ch, cw) != (h, w):
            crop = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        out.append(crop.flip(3) if flip else crop)
    return torch.cat(out)
