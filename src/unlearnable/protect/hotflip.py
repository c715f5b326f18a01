"""HotFlip search for per-sample text triggers (Ebrahimi et al., 2018), as MEM uses it.

One gradient pass gives, per sample and trigger position, the `candidates` tokens whose first-order effect
most lowers the CLIP loss, searched only among tokens allowed in published text. Positions are then swept
left to right: alternative c puts every sample's c-th candidate at that position (the reference's
batch-column rule), the current trigger is alternative 0, and the alternative with the lowest batch loss
wins; so a flip never raises the batch loss. All alternatives are scored in one batched text-tower pass
against image features computed once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..text import insert_trigger
from .loss import clip_loss


def _text_features(model, tokens: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    return torch.cat([F.normalize(model.encode_text(tokens[s:s + chunk]), dim=-1)
                      for s in range(0, len(tokens), chunk)])


def trigger_gradients(model, img: torch.Tensor, captions: torch.Tensor, trigger: torch.Tensor,
                      logit_scale: torch.Tensor) -> torch.Tensor:
    """d(batch loss)/d(token embedding) at the trigger positions: [B, k, D]."""
    captured = {}

    def hook(_module, _inp, out):
        out = out.detach().requires_grad_(True)
        captured["emb"] = out
        return out

    handle = model.token_embedding.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            txt = F.normalize(model.encode_text(insert_trigger(captions, trigger)), dim=-1)
            grad, = torch.autograd.grad(clip_loss(img, txt, logit_scale), captured["emb"])
    finally:
        handle.remove()
    return grad[:, 1:1 + trigger.shape[1]]


@torch.no_grad()
def hotflip(model, img: torch.Tensor, captions: torch.Tensor, trigger: torch.Tensor, vocab: torch.Tensor,
            candidates: int, logit_scale: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """One flip pass over all positions. img: normalised image features [B, D] (fixed).

    Returns (new trigger, loss before, loss after).
    """
    k = trigger.shape[1]
    grad = trigger_gradients(model, img, captions, trigger, logit_scale)  # [B, k, D]
    emb = model.token_embedding.weight[vocab]  # [V, D]
    cand = vocab[torch.topk(-(grad @ emb.T), candidates, dim=-1).indices]  # [B, k, C]
    trigger = trigger.clone()
    before = after = float(clip_loss(img, _text_features(model, insert_trigger(captions, trigger)), logit_scale))
    for j in range(k):
        alts = trigger.unsqueeze(0).repeat(candidates + 1, 1, 1)  # [C+1, B, k]
        alts[1:, :, j] = cand[:, j, :].T
        toks = insert_trigger(captions.repeat(candidates + 1, 1), alts.flatten(0, 1))
        txt = _text_features(model, toks).view(candidates + 1, len(captions), -1)
        losses = clip_loss(img.unsqueeze(0), txt, logit_scale)  # [C+1]
        best = int(torch.argmin(losses))
        trigger = alts[best]
        after = float(losses[best])
    return trigger, before, after
