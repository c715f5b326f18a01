"""Paths from data are untrusted; output folders never touch inputs.

A captions file can name `../../elsewhere.png` or a symlink pointing out of the dataset; such a file is
never opened. An output folder that is, contains or lies inside an input folder is refused before any work,
because writing it could destroy the input.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import DataError

# The shipped configuration: base config, JSON schema, grids and the paper's split lists. It lives in the
# package (so an installed wheel has it) and the repository's top-level `config/` is a link to it.
CONFIG_DIR = Path(__file__).resolve().parent / "config"


def real(p: str | os.PathLike) -> Path:
    """The absolute path with every symlink resolved (also for paths that do not exist yet)."""
    return Path(os.path.realpath(os.path.abspath(p)))


def escapes(root: str | os.PathLike, rel: str) -> Path | None:
    """Where `root / rel` really points when that is not strictly inside `root`; None when it is confined."""
    p, r = real(Path(root) / rel), real(root)
    return None if p.is_relative_to(r) and p != r else p


def confined(root: str | os.PathLike, rel: str) -> Path:
    """`root / rel`, refused unless it resolves inside `root` (reason `path_outside_dataset`)."""
    where = escapes(root, rel)
    if where is not None:
        raise DataError(f"{Path(root) / rel}: path_outside_dataset: resolves to {where}, outside the dataset "
                        f"folder {real(root)}")
    return Path(root) / rel


def overlap(out: str | os.PathLike, other: str | os.PathLike) -> str | None:
    """How `out` overlaps `other` ('is', 'lies inside', 'contains'), or None when they are apart."""
    o, i = real(out), real(other)
    if o == i:
        return "is"
    if o.is_relative_to(i):
        return "lies inside"
    if i.is_relative_to(o):
        return "contains"
    return None


def refuse_overlap(out: str | os.PathLike, inputs: dict[str, str | os.PathLike], out_name: str) -> None:
    """Raise naming the output and the input it would overlap; `inputs` maps a name (key, role) to a path."""
    for name, path in inputs.items():
        how = overlap(out, path)
        if how:
            raise DataError(f"{out_name} {out} {how} the input {name} {path}; choose an output folder apart "
                            "from every input")
