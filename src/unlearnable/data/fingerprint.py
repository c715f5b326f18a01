"""What a folder's protection was made from, by content: a resume must notice an image replaced or a caption
edited since the run it continues, even when every path, size and time stamp stayed the same."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..paths import confined
from .archive import file_sha256


def input_fingerprint(root: str | Path, files: list[str]) -> dict[str, str]:
    """Each file (relative to `root`: the caption files and every image read) with the sha256 of its bytes.
    Hashing reads each file once, in threads (hashlib releases the GIL): a few seconds per GB."""
    root = Path(root)
    names = sorted(set(files))
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(names, pool.map(lambda n: file_sha256(confined(root, n)), names)))


def changed_files(before: dict[str, str], now: dict[str, str]) -> list[str]:
    """Files added, removed or with other bytes, sorted."""
    return sorted(n for n in set(before) | set(now) if before.get(n) != now.get(n))
