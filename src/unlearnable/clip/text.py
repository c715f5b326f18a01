"""Caption tokens, trigger insertion and the trigger vocabulary.

A trigger is k CLIP-BPE tokens inserted right after start-of-text (the reference's "The "*k placeholder
prefix, overwritten), or between two words of the caption. Trigger tokens are drawn only from whole-word
tokens that survive decode -> encode as themselves, so the published text re-tokenizes to exactly the
optimised trigger.
"""
from __future__ import annotations

import functools
import re

import torch

SOT, EOT = 49406, 49407


def tokenize(tok, captions: list[str]) -> torch.Tensor:
    return tok(list(captions)).to(torch.int64)


def insert_trigger(tokens: torch.Tensor, trigger: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
    """[B, L] caption tokens + [B, k] trigger -> [B, L] tokens `SOT trigger caption...`, EOT kept.

    `at`: [B] token index each trigger starts at (`token_positions`); None: 1, right after start-of-text."""
    if trigger.shape[1] == 0:
        return tokens
    k = trigger.shape[1]
    length = tokens.shape[1]
    if at is None:
        out = torch.cat([tokens[:, :1], trigger.to(tokens.dtype), tokens[:, 1:length - k]], dim=1)
    else:
        j = torch.arange(length, device=tokens.device).expand(len(tokens), length)
        a = at.to(tokens.device).view(-1, 1).clamp(1, length - 1 - k)
        out = tokens.gather(1, torch.where(j < a, j, j - k).clamp(min=0))
        inside = (j >= a) & (j < a + k)
        out = torch.where(inside, trigger.to(tokens.dtype).gather(1, (j - a).clamp(0, k - 1)), out)
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


def published_caption(tok, trigger_ids, caption: str, word: int = 0) -> str:
    """The caption with its trigger's words put before its word number `word` (0: in front). Everything else
    is kept as written (line breaks and runs of spaces included); CLIP's tokenizer reads them as one space."""
    text = trigger_text(tok, trigger_ids) if len(trigger_ids) else ""
    if not text:
        return caption
    starts = [m.start() for m in re.finditer(r"\S+", caption)]
    if word < len(starts):
        return caption[:starts[word]] + text + " " + caption[starts[word]:]
    return (caption.rstrip() + " " + text).lstrip()


def token_positions(tok, captions: list[str], words: list[int] | None) -> torch.Tensor | None:
    """Where a trigger put before word number words[i] of caption i starts among its tokens (1 + the tokens
    of the words before it; BPE never joins across whitespace, so words tokenize alone as in the caption).
    None when every trigger is in front."""
    if words is None or not any(words):
        return None
    return torch.tensor([1 + sum(len(tok.encode(w)) for w in c.split()[:n]) for c, n in zip(captions, words)],
                        dtype=torch.int64)
