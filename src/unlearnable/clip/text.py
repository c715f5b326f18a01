"""Caption tokens, trigger insertion and the trigger vocabulary.

A trigger is k CLIP-BPE tokens inserted right after start-of-text (the reference's "The "*k placeholder
prefix, overwritten). Trigger tokens are drawn only from whole-word tokens that survive decode -> encode as
themselves, so the published text re-tokenizes to exactly the optimised trigger.
"""
from __future__ import annotations

import functools

import torch

SOT, EOT = 49406, 49407


def tokenize(tok, captions: list[str]) -> torch.Tensor:
    return tok(list(captions)).to(torch.int64)


def insert_trigger(tokens: torch.Tensor, trigger: torch.Tensor) -> torch.Tensor:
    """[B, L] caption tokens + [B, k] trigger -> [B, L] tokens `SOT trigger caption...`, EOT kept."""
    if trigger.shape[1] == 0:
        return tokens
    k = trigger.shape[1]
    length = tokens.shape[1]
    out = torch.cat([tokens[:, :1], trigger.to(tokens.dtype), tokens[:, 1:length - k]], dim=1)
    lost = ~(out == EOT).any(dim=1)  # the caption was long enough that its EOT fell off: restore it
    out[lost, -1] = EOT
    return out


@functools.lru_cache(maxsize=4)
def trigger_vocabulary(tok) -> torch.Tensor:
    """Token ids allowed in triggers: whole words that encode back to themselves; no special tokens."""
    allowed = []
    for token, idx in tok.encoder.items():
        if idx in (SOT, EOT) or not token.endswith("</w>"):
            continue
        word = tok.decode([idx]).strip()
        if word and tok.encode(word) == [idx]:
            allowed.append(idx)
    return torch.tensor(sorted(allowed), dtype=torch.int64)


def trigger_text(tok, trigger_ids) -> str:
    return tok.decode([int(t) for t in trigger_ids]).strip()


def published_caption(tok, trigger_ids, caption: str) -> str:
    prefix = trigger_text(tok, trigger_ids) if len(trigger_ids) else ""
    return f"{prefix} {caption}".strip()
