"""HotFlip search for per-sample text triggers (Ebrahimi et al., 2018), as MEM uses it.

One gradient pass gives, per sample and trigger position, the `candidates` tokens whose first-order effect
most lowers the CLIP loss, searched only among tokens allowed in published text. Positions are then swept
left to right: alternative c puts every sample's c-th candidate at that position (the reference's
batch-column rule), and an alternative replaces the current trigger only if it strictly lowers the batch
loss; so a flip never raises it. The current trigger's loss is known (from the gradient pass, then from the
winning alternative), so only the `candidates` alternatives are scored, in one batched text-tower pass
against image features computed once. Losses and choices stay on the device (0-dim tensors): the host
never waits for a flip.
"""
from __future__ import annotations

import torch

from ..clip.encoders import Encoder
from ..clip.text import insert_trigger
from .loss import clip_loss


def trigger_gradients(encoder: Encoder, img: torch.Tensor, captions: torch.Tensor, trigger: torch.Tensor,
                      logit_scale: torch.Tensor, at: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(d(batch loss)/d(token embedding) at the trigger positions [B, k, D], the batch loss)."""
    captured = {}

    def hook(_module, _inp, out):
        out = out.detach().requires_grad_(True)
        captured["emb"] = out
        return out

    handle = encoder.model.token_embedding.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            txt = encoder.text(insert_trigger(captions, trigger, at))
            loss = clip_loss(img, txt, logit_scale)
            grad, = torch.autograd.grad(loss, captured["emb"])
    finally:
        handle.remove()
    if at is None:
        return grad[:, 1:1 + trigger.shape[1]].float(), loss.detach()
    where = (at.view(-1, 1).clamp(1, grad.shape[1] - 1 - trigger.shape[1])
             + torch.arange(trigger.shape[1], device=grad.device))  # as insert_trigger places it
    return grad.gather(1, where.unsqueeze(-1).expand(-1, -1, grad.shape[2])).float(), loss.detach()


@torch.no_grad()
def hotflip(encoder: Encoder, img: torch.Tensor, captions: torch.Tensor, trigger: torch.Tensor,
            vocab: torch.Tensor, candidates: int, logit_scale: torch.Tensor,
            at: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One flip pass over all positions. img: normalised image features [B, D] (fixed). `at`: where each
    sample's trigger starts among its tokens (None: right after start-of-text).

    Returns (new trigger, loss before, loss after).
    """
    k = trigger.shape[1]
    grad, before = trigger_gradients(encoder, img, captions, trigger, logit_scale, at)  # [B, k, D]
    emb = encoder.model.token_embedding.weight[vocab].float()  # [V, D]
    candidates = min(candidates, len(vocab))  # a small vocabulary (common words) has fewer to offer
    cand = vocab[torch.topk(-(grad @ emb.T), candidates, dim=-1).indices]  # [B, k, C]
    after = before
    for j in range(k):
        alts = trigger.unsqueeze(0).repeat(candidates, 1, 1)  # [C, B, k]
        alts[:, :, j] = cand[:, j, :].T
        toks = insert_trigger(captions.repeat(candidates, 1), alts.flatten(0, 1),
                              None if at is None else at.repeat(candidates))
        txt = encoder.texts(toks).view(candidates, len(captions), -1)
        losses = clip_loss(img.unsqueeze(0), txt, logit_scale)  # [C]
        best = torch.argmin(losses).view(1)
        lowest = losses.gather(0, best)[0]
        trigger = torch.where(lowest < after, alts.index_select(0, best)[0], trigger)
        after = torch.minimum(lowest, after)
    return trigger, before, after
