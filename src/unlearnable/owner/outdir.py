"""An output folder that can never destroy what the program did not write.

Used by `unlearnable protect`. Before any work the output is refused when it is a file, is the input,
lies inside it or contains it, or already holds files without `--overwrite`. Work happens in a staging
sibling (`.OUT.unlearnable-partial/`) that a killed run resumes from; the finished folder is moved into
place at the end. A marker file (`.unlearnable-output.json`) lists every file the program wrote: with
`--overwrite`, only a previous output whose files are all listed there is replaced, and only those files
are deleted. A lock on the staging folder refuses a second run writing the same output at once.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path

from .. import DataError
from ..atomic import remove_path
from ..paths import real, refuse_overlap

log = logging.getLogger(__name__)
MARKER = ".unlearnable-output.json"


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir() or p.is_symlink())


def _marker(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("written_by") == "unlearnable" else None


def _output_path(out: str | os.PathLike) -> Path:
    """OUT as an absolute path whose staging sibling lies on OUT's own disk, or a one-line refusal."""
    if not str(out).strip():
        raise DataError("output folder: an empty path; name a new folder")
    path = Path(os.path.abspath(out))
    if path.parent == path:
        raise DataError(f"output {out}: the filesystem root; name a new folder")
    if os.path.ismount(path):  # its staging sibling would sit on the parent disk; the final move fails (EBUSY)
        raise DataError(f"output {out} is a mount point (a drive's root); name a new folder inside it, "
                        f"e.g. {path / 'protected'}")
    return path


class OutputFolder:
    """Checks, staging, resume and the final move of one output folder; use as a context manager."""

    def __init__(self, out: str | os.PathLike, inputs: dict[str, str | os.PathLike], request: dict,
                 overwrite: bool = False):
        self.out = _output_path(out)
        self.staging = self.out.with_name(f".{self.out.name}.unlearnable-partial")
        # as it will read back from the marker (tuples become lists), so a resume recognises its own request
        self.request, self.overwrite = json.loads(json.dumps(request)), overwrite
        self.inputs: dict[str, str] | None = None  # each input file's sha256, when the caller knows them
        self.restart = False
        self._lock_fd = -1
        if self.out.exists() and not self.out.is_dir():
            raise DataError(f"output {self.out} exists and is not a folder")
        refuse_overlap(self.out, inputs, "output")
        refuse_overlap(self.staging, inputs, "staging folder")
        if self.out.is_dir() and any(self.out.iterdir()):
            self._check_replaceable()
        if self.staging.exists() and (not self.staging.is_dir() or _marker(self.staging) is None):
            raise DataError(f"{self.staging} exists and was not written by unlearnable; move it away")

    def _check_replaceable(self) -> None:
        if not self.overwrite:
            raise DataError(f"output {self.out} exists and is not empty; choose a new folder, or pass --overwrite "
                            "to replace a previous output of unlearnable")
        marker = _marker(self.out)
        if marker is None:
            raise DataError(f"output {self.out} was not written by unlearnable (no {MARKER}); --overwrite only "
                            "replaces a previous output of unlearnable")
        foreign = sorted(set(_files(self.out)) - set(marker.get("files", [])) - {MARKER})
        if foreign:
            raise DataError(f"output {self.out} holds {len(foreign)} file(s) unlearnable did not write "
                            f"(e.g. {foreign[0]}); move them away first")

    def expect_inputs(self, inputs: dict[str, str], restart: bool = False) -> None:
        """Resume only from a run made from these very bytes (`inputs`: file -> sha256); a run made from other
        bytes is refused in one line, or discarded and started again when `restart`."""
        self.inputs, self.restart = inputs, restart

    def __enter__(self) -> Path:
        """The staging folder, fresh or (same request and input) left by a killed run, locked for this process."""
        marker = _marker(self.staging) if self.staging.is_dir() else None
        if marker is not None:
            self._lock()
            if marker.get("request") == self.request and self._same_inputs(marker):
                log.info("resuming the unfinished output in %s", self.staging)
                return self.staging
            if marker.get("request") == self.request:
                log.warning("the input changed since the unfinished run in %s: starting again (--restart)",
                            self.staging)
            else:
                log.info("%s holds an unfinished output of another request; starting again", self.staging)
            remove_path(self.staging)
        self.staging.mkdir(parents=True)
        self._lock()
        self._write_marker(self.staging, [])
        return self.staging

    def _same_inputs(self, marker: dict) -> bool:
        """True when the unfinished run was made from the same bytes (or nobody gave the inputs); raises, unless
        `restart`, when they differ."""
        from ..data.fingerprint import changed_files

        if self.inputs is None:
            return True
        changed = changed_files(marker.get("inputs") or {}, self.inputs)
        if not changed:
            return True
        if self.restart:
            return False
        self.__exit__()
        raise DataError(f"the input changed since the unfinished run in {self.staging} was made from it "
                        f"({len(changed)} file(s) differ, e.g. {changed[0]}); resuming would publish stale noise: "
                        "restore the input, or pass --restart to start over")

    def _lock(self) -> None:
        self._lock_fd = os.open(self.staging, os.O_RDONLY)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise DataError(f"another unlearnable process is writing {self.out} (lock on {self.staging})") from None

    def _write_marker(self, folder: Path, files: list[str]) -> None:
        tmp = folder / (MARKER + ".tmp")
        record = {"written_by": "unlearnable", "request": self.request, "files": files}
        if self.inputs is not None:
            record["inputs"] = self.inputs  # what a resume checks (beside OUT/published, never inside it)
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, folder / MARKER)

    def finish(self, scratch: list[str]) -> None:
        """Drop the scratch entries, record the files, and move the staging folder to the output."""
        for name in scratch:
            remove_path(self.staging / name)
        self._write_marker(self.staging, [f for f in _files(self.staging) if f != MARKER])
        if self.out.is_dir():
            old = self.out.with_name(f".{self.out.name}.unlearnable-old")
            if old.exists():  # a replacement that was cut short
                if _marker(old) is None:
                    raise DataError(f"{old} exists and was not written by unlearnable; move it away")
                self._delete_listed(old)
            if any(self.out.iterdir()):
                self._check_replaceable()  # nothing foreign arrived while we worked
                os.replace(self.out, old)
                self.staging.rename(self.out)
                self._delete_listed(old)
                return
            self.out.rmdir()
        self.staging.rename(self.out)

    @staticmethod
    def _delete_listed(old: Path) -> None:
        """Delete exactly the files a previous output's marker lists, then its emptied folders."""
        for rel in (_marker(old) or {}).get("files", []) + [MARKER]:
            p = old / rel
            if real(p).is_relative_to(real(old)) and (p.is_file() or p.is_symlink()):
                p.unlink()
        for d in sorted((p for p in old.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            if not any(d.iterdir()):
                d.rmdir()
        if not any(old.iterdir()):
            old.rmdir()

    def __exit__(self, *exc) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
