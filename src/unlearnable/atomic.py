"""Write-then-rename helpers: an interrupted job never leaves a file that looks complete."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, replace_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; move it into place only if the block succeeds.

    Works for files and directories alike. An existing non-empty folder at `path` is never deleted unless
    the caller owns it and says so (`replace_dir`): it may be a user's folder given as an output by mistake.
    """
    final = Path(path)
    if final.is_dir() and not final.is_symlink() and any(final.iterdir()) and not replace_dir:
        from . import DataError

        raise DataError(f"{final}: output folder exists and is not empty; refusing to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    remove_stale_temporaries(final)
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final) if replace_dir else final.rmdir()
        os.replace(tmp, final)
    finally:
        remove_path(tmp)


def remove_stale_temporaries(final: Path) -> None:
    """Delete what a killed writer of `final` left (`.NAME.tmp-PID`): one writer per output at a time (the
    workflow's results lock, Snakemake's per-output jobs), so any such sibling is an abandoned one."""
    pattern = re.compile(rf"\.{re.escape(final.name)}\.tmp-\d+")
    for p in final.parent.iterdir():
        if pattern.fullmatch(p.name):
            remove_path(p)


def remove_path(p: Path) -> None:
    """Remove a file, a link or a folder tree, if it is there."""
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
