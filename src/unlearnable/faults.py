"""Turn environment faults (full disk, no permission, read-only file system) into one line naming a path.

They surface from many layers: an `OSError` with an errno, torch's zip writer ("failed writing file"),
SQLite through SQLAlchemy ("database or disk is full"). The original exception stays in the job's log.
"""
from __future__ import annotations

import errno
import os
import re

FAULT_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                errno.EROFS: "read-only file system"}
_TEXT = [(re.compile(r"no space left|disk is full|failed writing file|file write failed", re.I),
          "no space left on device"),
         (re.compile(r"permission denied", re.I), "permission denied"),
         (re.compile(r"read-only file system", re.I), "read-only file system")]


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def describe_fault(exc: BaseException, where: str | os.PathLike | None = None) -> str | None:
    """'<path>: no space left on device' for an environment fault anywhere in the chain, else None.

    The path is the file the OS named, or else `where` (the job's output), so the user knows which disk.
    """
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in FAULT_ERRNOS:
            path = e.filename or where or "?"
            return f"{path}: {FAULT_ERRNOS[e.errno]}"
    for e in _chain(exc):
        for pattern, what in _TEXT:
            if pattern.search(str(e)):
                return f"{where or '?'}: {what} ({type(e).__name__})"
    return None
