"""The symmetric CLIP loss on already-normalised features, batched over alternatives."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def clip_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Mean of image->text and text->image cross-entropy with diagonal targets.

    img, txt: [..., B, D]; leading dimensions are independent alternatives (one loss each).
    """
    logits = logit_scale * img @ txt.transpose(-1, -2)
    target = torch.arange(logits.shape[-1], device=logits.device).expand(logits.shape[:-1])
    i2t = F.cross_entropy(logits.flatten(0, -2), target.flatten(), reduction="none").view(target.shape)
    t2i = F.cross_entropy(logits.transpose(-1, -2).flatten(0, -2), target.flatten(), reduction="none"
                          ).view(target.shape)
    return ((i2t + t2i) / 2).mean(-1)
