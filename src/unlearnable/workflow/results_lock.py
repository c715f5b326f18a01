"""One live workflow per results folder, whatever its working folder.

Snakemake's own lock lives in the working folder's `.snakemake/`, so two workflows started from different
folders with the same absolute `results:` would both write the same protections. This lock lives in the
results folder itself. It is an `flock`, so the kernel drops it when the holding process dies (even by
SIGKILL): a killed workflow never blocks the next one.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

from .. import DataError

LOCK_NAME = ".unlearnable.lock"


def hold_results_lock(results: str | os.PathLike) -> int:
    """Take the lock for this process's lifetime (keep the returned descriptor open), or raise naming the holder."""
    path = Path(results) / LOCK_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:  # read-only, a file in the way, no permission: one line naming the path
        raise DataError(f"config key 'results': {e.filename or path}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = json.loads(path.read_text() or "{}")
        except ValueError:
            holder = {}
        os.close(fd)
        raise DataError(f"{Path(results).resolve()} is in use by another live workflow (pid {holder.get('pid', '?')} "
                        f"on {holder.get('host', '?')}, working folder {holder.get('cwd', '?')}); wait for it to "
                        "finish or use another 'results' folder") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "cwd": os.getcwd()}).encode(), 0)
    return fd
