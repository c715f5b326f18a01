"""Triggers that caption cleaning cannot strip: common English words, put inside the caption.

A rare-word filter drops words few images use, a word list drops what is not English, and an attacker who
knows MEM strips the tokens right after start-of-text. A trigger drawn from a small set of frequent English
words (frequent in CLIP's own BPE training text: its merges are ranked by frequency) passes the first two,
and a seeded position inside each caption defeats the third.
"""
from __future__ import annotations

import re

import numpy as np
import torch

from ..clip.text import trigger_vocabulary
from ..defend.defences import english_words


def common_word_vocabulary(tok, size: int, captions: list[str]) -> torch.Tensor:
    """The `size` lowest-ranked whole-word BPE tokens (the most frequent merges) that are English words of 4
    letters or more, round-trip as themselves, and never occur in the clean captions: a trigger word is
    then never mistaken for what a caption says."""
    used = {re.sub(r"[^a-z]", "", w.lower()) for c in captions for w in c.split()}
    allowed, english, out = set(trigger_vocabulary(tok).tolist()), english_words(), []
    for token, idx in sorted(tok.encoder.items(), key=lambda kv: kv[1]):
        word = token.removesuffix("</w>")
        if (idx in allowed and token.endswith("</w>") and word.isalpha() and len(word) >= 4 and word in english
                and word not in used):
            out.append(idx)
            if len(out) == size:
                break
    return torch.tensor(out, dtype=torch.int64)


def inside_positions(captions: list[str], gen: torch.Generator) -> np.ndarray:
    """Per caption, the word the trigger goes before: uniform over 1..n (after the first word, at the latest
    at the end), so it is never right after start-of-text unless the caption is empty."""
    n = np.array([len(c.split()) for c in captions], dtype=np.int64)
    r = torch.rand(len(captions), generator=gen, dtype=torch.float64).numpy()
    return np.where(n > 0, 1 + np.minimum((r * n).astype(np.int64), np.maximum(n - 1, 0)), 0)
