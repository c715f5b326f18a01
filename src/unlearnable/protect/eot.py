"""Expectation over a scraper's transforms (EOT): noise optimised to survive the image defences.

Each PGD step (and each surrogate step) sees its batch through one transform drawn from the identity and the
configured image defences. The forward pass applies the defence itself (`defences.Defence.image`, the very
code a defended folder is made with) to the rounded uint8 images; the backward pass treats it as the identity
(BPDA, Athalye et al. 2018), which is what lets a non-differentiable JPEG round trip be optimised through.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import ConfigError
from ..defend.defences import IMAGE_KINDS, Defence


class ScraperTransforms:
    def __init__(self, specs: tuple[dict, ...] = ()):
        self.defences = [Defence.from_config(f"eot[{i}]", dict(s), key=f"method eot[{i}]") for i, s in enumerate(specs)]
        for i, d in enumerate(self.defences):
            if not d.changes_images:
                raise ConfigError(f"method: eot[{i}] kind {specs[i].get('kind')!r} is not an image defence "
                                  f"(one of {IMAGE_KINDS})")

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
    def apply(x: torch.Tensor, defence: Defence | None) -> torch.Tensor:
        """x: [B,3,H,W] floats in 0..255. The defended images, with the gradient passed straight through."""
        if defence is None:
            return x
        imgs = x.detach().round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out = np.stack([defence.image(img) for img in imgs])
        y = torch.from_numpy(out).to(x.device).permute(0, 3, 1, 2).float()
        return x + (y - x).detach()
