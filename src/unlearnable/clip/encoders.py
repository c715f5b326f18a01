"""Where pixels and tokens become CLIP features: one definition for training, protection and evaluation.

Images arrive as uint8 NHWC batches (or float NCHW holding 0..255, for PGD), move to the device as they
are and are normalised there, so a GPU receives a quarter of the bytes a float batch would take.

Text runs through the tower on its first L positions only, L = the batch's longest sequence up to its
end-of-text token. CLIP's text tower is causal and pools at end-of-text, so the padding after it cannot
change the features: the result equals the full-length forward up to float rounding, for 77/L times less
work (L is 15-25 for real captions). Towers this cannot be proven for (class tokens, padding masks, other
pooling) run at full length.

On a GPU (`sync_free`) the encoder never reads tokens to find L, since reading a GPU tensor's maximum would
stall the host on every text encode: callers cut host tokens to their length before moving them (`trim`,
a host operation), and tokens built on the device are cut to a bound set once (`text_len`: the protection
engine's longest caption plus its trigger). On the CPU, L is read per batch, for free.

On CUDA the forwards run under bf16 autocast (no loss scaling needed), and anywhere with `precision: bf16`
(the CPU then runs the GPU's numerics); features come back in fp32.
Convolutional image towers run channels-last (the model is moved and converted once, by its Encoder).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from ..provenance import uses_bf16
from .models import normalisation


def _sliceable(model) -> bool:
    return (hasattr(model, "transformer") and hasattr(model, "token_embedding")
            and getattr(model, "attn_mask", None) is not None
            and getattr(model, "text_pool_type", None) in ("argmax", "eos")
            and getattr(model, "cls_emb", None) is None)


def pool_index(model, tokens: torch.Tensor) -> torch.Tensor:
    """Per row, the position the tower pools at (open_clip's rule for its pooling type)."""
    if model.text_pool_type == "eos":
        return (tokens == model.text_eos_id).int().argmax(dim=-1)
    return tokens.argmax(dim=-1)


def text_length(model, tokens: torch.Tensor) -> int:
    """How many leading positions a batch needs: through its last pooled position."""
    return int(pool_index(model, tokens).max()) + 1 if len(tokens) else tokens.shape[1]


def encode_text(model, tokens: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """open_clip's `CLIP.encode_text` (unnormalised) on the first n positions (default `text_length`)."""
    if not _sliceable(model):
        return model.encode_text(tokens)
    n = min(n or text_length(model, tokens), tokens.shape[1])
    tokens = tokens[:, :n]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:n].to(cast)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:n, :n]))
    x = x[torch.arange(len(x), device=x.device), pool_index(model, tokens)]
    proj = model.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj


class Encoder:
    """A model with its preprocessing, its device and its precision; it places the model on the device."""

    def __init__(self, model, device: torch.device, precision: str = "auto", sync_free: bool | None = None):
        """`precision`: see `provenance.uses_bf16`. `sync_free`: never read a device tensor on the host inside a
        forward (default: on CUDA; tests set it on the CPU to run the GPU's logic)."""
        self.model, self.device = model, torch.device(device)
        self.sync_free = self.device.type == "cuda" if sync_free is None else sync_free
        self.text_len: int | None = None  # a bound on every text's length, for tokens already on the device
        mean, std = normalisation(model)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1) * 255
        self.amp = uses_bf16(precision, self.device)
        # conv towers (not a ViT's patchify conv) run faster channels-last: about 10% for RN50 on this CPU
        conv = any(isinstance(m, torch.nn.Conv2d) and m.kernel_size != m.stride for m in model.visual.modules())
        self.memory_format = torch.channels_last if conv else torch.contiguous_format
        model.to(self.device).to(memory_format=self.memory_format)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC -> float NCHW in 0..255 on the device (float NCHW input is moved as it is)."""
        x = images.to(self.device, non_blocking=True)
        if x.dtype == torch.uint8:
            x = x.permute(0, 3, 1, 2).float()
        return x

    def input(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised model input; differentiable in float pixels."""
        return ((self.pixels(images) - self.mean) / self.std).contiguous(memory_format=self.memory_format)

    def image(self, images: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            f = self.model.encode_image(self.input(images))
        return F.normalize(f.float(), dim=-1)

    def trim(self, tokens: torch.Tensor) -> torch.Tensor:
        """Host tokens cut to the positions they need (`text_length`), read on the host before they move."""
        if not _sliceable(self.model) or not len(tokens):
            return tokens
        return tokens[:, :text_length(self.model, tokens.cpu())]

    def text(self, tokens: torch.Tensor) -> torch.Tensor:
        # sync-free: never read the tokens (they are trimmed already, or cut to the bound); else encode_text
        # reads their length
        n = min(self.text_len or tokens.shape[1], tokens.shape[1]) if self.sync_free else None
        with self.autocast():
            f = encode_text(self.model, tokens.to(self.device, non_blocking=True), n)
        return F.normalize(f.float(), dim=-1)

    def bound_text_length(self, tokens: torch.Tensor, extra: int = 0) -> None:
        """Set `text_len` from host tokens (every text this encoder will see, less `extra` inserted tokens)."""
        if _sliceable(self.model) and len(tokens):
            self.text_len = min(tokens.shape[1], text_length(self.model, tokens.cpu()) + extra)

    def texts(self, tokens: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Many texts, in chunks (one chunk's longest caption sets its length)."""
        return torch.cat([self.text(tokens[s:s + chunk]) for s in range(0, len(tokens), chunk)])


class EnsembleEncoder:
    """Several surrogates seen as one, for protection against an ensemble: each gives its own normalised
    features, stacked [M, B, D], so a loss over them is one loss per member (`clip_loss` batches over leading
    dimensions) that the caller averages. Members share open_clip's tokenizer and the input resolution."""

    def __init__(self, encoders: list[Encoder]):
        self.encoders, self.device = list(encoders), encoders[0].device
        self.model = torch.nn.ModuleList([e.model for e in encoders])

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoders[0].pixels(images)

    def trim(self, tokens: torch.Tensor) -> torch.Tensor:
        """Cut to the longest length any member needs (members differ only in their towers)."""
        if any(not _sliceable(e.model) for e in self.encoders):
            return tokens
        return self.encoders[0].trim(tokens)

    def bound_text_length(self, tokens: torch.Tensor, extra: int = 0) -> None:
        for e in self.encoders:
            e.bound_text_length(tokens, extra)

    def image(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([e.image(images) for e in self.encoders])

    def text(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.stack([e.text(tokens) for e in self.encoders])

    def texts(self, tokens: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        return torch.stack([e.texts(tokens, chunk) for e in self.encoders])
