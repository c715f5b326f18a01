"""Extract a downloaded zip without trusting its member names (zip-slip, links, absolute paths)."""
from __future__ import annotations

import hashlib
import logging
import shutil
import stat
import time
import zipfile
from pathlib import Path, PurePosixPath

from .. import DataError

log = logging.getLogger(__name__)


def unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why a member may not be extracted, or None when it stays inside the target folder."""
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in path.parts:
        return "path escapes the target folder ('..')"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    return None


def safe_extract(archive: str | Path, dest: str | Path) -> dict:
    """Check every member first, then extract; an unsafe member fails the whole archive with one line."""
    archive, dest = Path(archive), Path(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{archive}: not a readable zip archive ({e}); delete it to download again") from None
    with zf:
        members = zf.infolist()
        for info in members:
            why = unsafe_member(info)
            if why:
                raise DataError(f"{archive}: refusing to extract member {info.filename!r}: {why}")
        dest.mkdir(parents=True, exist_ok=True)
        total = sum(i.file_size for i in members)
        done, t0 = 0, time.time()
        last = t0
        for info in members:
            target = dest / info.filename.replace("\\", "/")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            except (zipfile.BadZipFile, EOFError, OSError) as e:
                raise DataError(f"{archive}: member {info.filename!r} is corrupt ({e}); delete the archive "
                                "to download again") from None
            done += info.file_size
            if time.time() - last > 10:
                last = time.time()
                rate = done / max(last - t0, 1e-9)
                log.info("extracting %s: %.0f%% (%.1f MB/s, ETA %.0f s)", archive.name, 100 * done / max(total, 1),
                         rate / 1e6, (total - done) / max(rate, 1e-9))
    return {"members": len(members), "bytes": total, "sha256": file_sha256(archive)}


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
