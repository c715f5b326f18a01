"""Seeds and version records, so every result says how it was made."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import random
import subprocess
from pathlib import Path

import numpy as np
import torch

_PACKAGES = ("torch", "torchvision", "open_clip_torch", "numpy", "pandas", "pyarrow", "mlflow", "snakemake", "unlearnable")


def seed_everything(seed: int) -> torch.Generator:
    """Seed every global RNG and return a dedicated torch generator for data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in _PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    out["cuda"] = torch.version.cuda or "none"
    commit = _git_commit()
    if commit:
        out["git_commit"] = commit
    return out


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA without one is an error, not a silent fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        from . import ConfigError

        raise ConfigError(f"config key 'device': {device!r} requested but CUDA is not available")
    return torch.device(device)


def configure_determinism(device: torch.device) -> None:
    """Bit-identical reruns on the CPU; on CUDA, deterministic kernels where PyTorch has them."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
