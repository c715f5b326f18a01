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

_PACKAGES = ("torch", "torchvision", "open_clip_torch", "numpy", "pandas", "pyarrow", "mlflow", "snakemake",
             "unlearnable")


def seed_everything(seed: int) -> torch.Generator:
    """Seed every global RNG and return a dedicated torch generator for data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


PRECISIONS = ("auto", "bf16", "fp32")


def uses_bf16(precision: str, device: torch.device | str) -> bool:
    """Whether forward passes run under bf16 autocast. `auto`: on CUDA only (the default); `bf16`: on any
    device, the CPU included, so a CPU runs the GPU's numerics (CI, the bf16-vs-fp32 study); `fp32`: never."""
    if precision not in PRECISIONS:
        from . import ConfigError

        raise ConfigError(f"config key 'precision': {precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision == "bf16" or (precision == "auto" and torch.device(device).type == "cuda")


def versions(device: torch.device | None = None, precision: str = "auto") -> dict[str, str]:
    """Package versions and the machine. `device`: where the job ran (its GPU's name and cuDNN's version are
    recorded, since GPU results differ by GPU kind); `precision`: the setting, recorded as the precision that
    ran (bf16 or fp32)."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in _PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    out["cuda"] = torch.version.cuda or "none"
    out["cpu"] = cpu_model()
    out["torch_threads"] = str(torch.get_num_threads())
    if device is not None:
        out.update(device_record(device, precision))
    commit = _git_commit()
    if commit:
        out["git_commit"] = commit
    return out


def device_record(device: torch.device, precision: str = "auto") -> dict[str, str]:
    """The device a job ran on: type, GPU name and compute capability, cuDNN version, and the precision of its
    forward passes (bf16 where autocast ran, else fp32)."""
    device = torch.device(device)
    out = {"device": device.type, "gpu": "none", "cudnn": "none",
           "precision": "bf16" if uses_bf16(precision, device) else "fp32"}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        out.update(gpu=f"{torch.cuda.get_device_name(index)} (sm_{major}{minor})",
                   cudnn=str(torch.backends.cudnn.version() or "none"))
    return out


def cpu_model() -> str:
    """The CPU's model name: float results are reproducible per machine kind, so every result names it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA without one is an error, not a silent fallback.

    A plain `cuda` takes a GPU no other job of this machine holds (see `claim_gpu`).
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        from . import ConfigError

        raise ConfigError(f"config key 'device': {device!r} requested but CUDA is not available")
    if device == "cuda":
        device = f"cuda:{claim_gpu(torch.cuda.device_count())}"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)  # kernels, caches and `torch.cuda.*` calls without an index go to this GPU
    return dev


_HELD_GPUS: dict[int, int] = {}


def claim_gpu(count: int, lock_dir: str | None = None) -> int:
    """The index of a GPU no other process of this user holds, locked until this process exits.

    With `--resources gpu=N` Snakemake runs at most N GPU jobs at once on a workstation, but does not say which
    GPU each should use; this lock makes each take a different one. Where a scheduler already exposes one GPU
    per job (SLURM sets CUDA_VISIBLE_DEVICES), index 0 is that job's own GPU either way.

    Lock files are per user (`unlearnable-<uid>-gpuN.lock`, mode 0600), so one user's files never stand in
    another's way on a shared host or a shared /tmp; a lock file this process cannot open (another owner, a
    symlink planted in /tmp) counts as a busy GPU, never as an error.
    """
    import fcntl
    import tempfile

    if _HELD_GPUS:
        return next(iter(_HELD_GPUS))
    folder = lock_dir or tempfile.gettempdir()
    for i in range(count):
        path = os.path.join(folder, f"unlearnable-{os.getuid()}-gpu{i}.lock")
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600)
        except OSError:  # not ours, or not a plain file: as good as busy
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _HELD_GPUS[i] = fd
        return i
    return 0  # more GPU jobs than GPUs (the limit was not set): share the first


def configure_determinism(device: torch.device) -> None:
    """Bit-identical reruns on the CPU. On CUDA only where PyTorch has deterministic kernels: the others (the
    attention backward among them) run with a warning (`warn_only`), so GPU runs are not bit-repeatable."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
