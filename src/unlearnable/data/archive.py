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


MAX_RATIO = 100  # photos and caption text never expand this much; a zip bomb does (a 2 MB archive of 2 GB)
BOMB_MIN_BYTES = 16 << 20  # a small member may compress well (an all-white PNG, a sparse JSON)
FREE_MARGIN = 256 << 20  # left free on the disk after extracting


def check_members(archive: Path, members: list[zipfile.ZipInfo], dest: Path) -> int:
    """Every member's name, expansion and place, and the disk's room for all of them, before a byte is written;
    the total bytes to write. Each refusal is one line naming the member and why."""
    files, dirs = {}, set()
    for info in members:
        why = unsafe_member(info)
        if why:
            raise DataError(f"{archive}: refusing to extract member {info.filename!r}: {why}")
        name = PurePosixPath(info.filename.replace("\\", "/")).as_posix().rstrip("/")
        if info.is_dir():
            dirs.add(name)
            continue
        if name in files:
            raise DataError(f"{archive}: member {info.filename!r} is given twice; the second would overwrite the first")
        files[name] = info
        if info.file_size > BOMB_MIN_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise DataError(f"{archive}: member {info.filename!r} would expand {ratio:.0f}x ({info.compress_size:,} "
                            f"-> {info.file_size:,} bytes): a zip bomb, refused before extracting")
        dirs.update(p.as_posix() for p in PurePosixPath(name).parents if p.as_posix() != ".")
    clash = sorted(set(files) & dirs)
    if clash:
        raise DataError(f"{archive}: {clash[0]!r} is both a file and a folder in the archive; it cannot be extracted")
    total = sum(i.file_size for i in files.values())
    probe = dest
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if total + FREE_MARGIN > free:
        raise DataError(f"{archive}: extracting needs {total / 2**30:.2f} GiB but {probe} has "
                        f"{free / 2**30:.2f} GiB free (keeping 0.25 GiB); free some space or set 'resources' to a "
                        "larger disk")
    return total


def safe_extract(archive: str | Path, dest: str | Path) -> dict:
    """Check every member first, then extract; an unsafe member fails the whole archive with one line."""
    archive, dest = Path(archive), Path(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{archive}: not a readable zip archive ({e}); delete it to download again") from None
    with zf:
        members = zf.infolist()
        total = check_members(archive, members, dest)
        dest.mkdir(parents=True, exist_ok=True)
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
            except OSError as e:
                if e.errno is not None:  # the disk, not the archive (ENOSPC, EACCES): say so
                    raise DataError(f"{target}: cannot write ({e.strerror})") from None
                raise DataError(f"{archive}: member {info.filename!r} is corrupt ({e}); delete the archive "
                                "to download again") from None
            except (zipfile.BadZipFile, EOFError) as e:
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
