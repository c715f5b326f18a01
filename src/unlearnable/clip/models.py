"""Model factory: open_clip architectures by name, plus tiny configs shipped with this package.

`pretrained` is `none` (train from scratch, the paper's setting), an open_clip tag (resolved by open_clip,
which may need its cache or a network), or a local weights file (safetensors or a state dict loaded with
`weights_only=True`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from safetensors.torch import load_file, save_file

from .. import ConfigError

log = logging.getLogger(__name__)
CONFIG_DIR = Path(__file__).resolve().parents[1] / "model_configs"
open_clip.add_model_config(CONFIG_DIR)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    pretrained: str | None = None


def available_models() -> list[str]:
    return open_clip.list_models()


def suggest_models(name: str, exact: bool = False) -> list[str]:
    """[name] when it is an architecture (exact), else up to five close names."""
    names = available_models()
    if exact:
        return [name] if name in names else []
    import difflib

    lower = {n.lower(): n for n in names}
    return [lower[n] for n in difflib.get_close_matches(name.lower(), list(lower), n=5, cutoff=0.5)]


def pretrained_tags(arch: str) -> list[str]:
    return list(open_clip.list_pretrained_tags_by_model(arch))


def looks_like_file(pretrained: str) -> bool:
    return "/" in pretrained or "\\" in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))


def model_config(name: str) -> dict:
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ConfigError(f"model {name!r}: unknown architecture; close names: "
                          f"{', '.join(suggest_models(name)) or 'none'} (all: open_clip.list_models())")
    return cfg


def image_resolution(name: str) -> int:
    size = model_config(name)["vision_cfg"]["image_size"]
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def create_model(spec: ModelSpec) -> torch.nn.Module:
    model_config(spec.name)  # fail early with a clear message
    pre = None if spec.pretrained in (None, "", "none") else spec.pretrained
    local = pre is not None and Path(pre).exists()
    if pre is not None and not local and looks_like_file(pre):
        raise ConfigError(f"model {spec.name!r}: pretrained weights file not found: {pre}")
    model = open_clip.create_model(spec.name, pretrained=None)
    if local:
        load_weights(model, pre)
    elif pre is not None:
        model = open_clip.create_model(spec.name, pretrained=pre)
    return model


def normalisation(model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    visual = model.visual
    return (tuple(getattr(visual, "image_mean", None) or OPENAI_MEAN),
            tuple(getattr(visual, "image_std", None) or OPENAI_STD))


def tokenizer(name: str):
    return open_clip.get_tokenizer(name)


def save_weights(model: torch.nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=metadata or {})


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over the state dict's names, dtypes, shapes and bytes: which weights a model holds, recorded so
    that a run says what it started from (a checkpoint, a tag, or a random init)."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load safetensors or a plain (possibly wrapped) state dict; never unpickles arbitrary objects."""
    path = Path(path)
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ConfigError(f"{path}: not a loadable weights file ({type(e).__name__}: {e})") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        reason = str(e).splitlines()[-1].strip()
        raise ConfigError(f"{path}: weights do not match the architecture ({reason})") from None
    if missing or unexpected:
        raise ConfigError(f"{path}: weights do not match the architecture "
                          f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
