"""How a protection commits its progress: one noise file rewritten in place, never a second full copy.

A pass rewrites each unit's noise rows in the one noise file. Before a batch's rows are overwritten, their old
bytes are appended to an undo log; a small marker (the RNG, the triggers, the colour transforms, the pass's
position) commits every batch before it, after which the log is emptied. A job killed mid-pass restores the rows
the log holds (newest first), returns to the marker and redoes the batches after it, so it ends with the same
bytes as an uninterrupted run. A marker is committed once the log holds an eighth of the noise (at most 256 MiB)
or a minute's work, so the log stays far below a second copy: at MSCOCO's per-pair size the noise is 85 GB.

The log is named for the commit it follows (`undo-<seq>.log`). A kill after a commit is renamed into place but
before the log it covers is removed leaves a log of an older commit: a resume discards it, never replays it
over rows that commit already holds. Every kill point of a commit is therefore safe (`tests/test_protect.py`
kills one at each of its unlinks and renames).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..data.rowfile import RowFile

_HEAD = np.dtype([("batch", "<i8"), ("rows", "<i8")])


class UndoLog:
    """Append-only records (batch, units, old rows) of rows overwritten since the commit numbered `seq`."""

    def __init__(self, workdir: str | Path, noise: RowFile, seq: int):
        self.workdir, self.noise = Path(workdir), noise
        self.follow(seq)
        noise_bytes = len(noise) * noise.row_bytes
        self.limit = max(1, min(256 * 2 ** 20, noise_bytes // 8))  # past it, the pass commits a marker

    def follow(self, seq: int) -> None:
        """Log the rows overwritten after commit `seq` (called once that commit is in place)."""
        self.seq, self.path = seq, self.workdir / f"undo-{seq}.log"
        self.bytes = self.path.stat().st_size if self.path.exists() else 0

    def stale(self) -> list[Path]:
        """Logs of older commits (a kill between a commit and its log's removal) and the unnumbered log of
        earlier versions: their rows belong to batches a commit already holds."""
        return sorted(p for p in self.workdir.glob("undo*.log") if p != self.path)

    def append(self, batch: int, units: np.ndarray, old_rows: np.ndarray) -> None:
        """Called before the rows are overwritten: a record cut short by a kill is one whose rows never were."""
        units = np.ascontiguousarray(units, dtype="<i8")
        head = np.array([(batch, len(units))], dtype=_HEAD)
        rows = np.ascontiguousarray(old_rows, dtype=self.noise.dtype)
        record = head.tobytes() + units.tobytes() + rows.tobytes()
        with open(self.path, "ab") as f:
            f.write(record)
        self.bytes += len(record)

    def records(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """The complete records, oldest first (a torn last record is left out)."""
        if not self.path.exists():
            return []
        data, out, at = self.path.read_bytes(), [], 0
        while at + _HEAD.itemsize <= len(data):
            batch, n = (int(v) for v in np.frombuffer(data, _HEAD, 1, at)[0])
            end = at + _HEAD.itemsize + 8 * n + n * self.noise.row_bytes
            if end > len(data):
                break
            units = np.frombuffer(data, "<i8", n, at + _HEAD.itemsize)
            rows = np.frombuffer(data, self.noise.dtype, n * int(np.prod(self.noise.row_shape)),
                                 at + _HEAD.itemsize + 8 * n).reshape((n,) + self.noise.row_shape)
            out.append((batch, units, rows))
            at = end
        return out

    def restore(self) -> int:
        """Put back every row logged after the resumed commit, newest record first (the oldest bytes of a row
        win), and drop the stale logs; returns the count. A kill while restoring restores again, the same way."""
        for old in self.stale():
            old.unlink()
        records = self.records()
        for _batch, units, rows in reversed(records):
            self.noise.write(units, rows)
        self.clear()
        return len(records)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self.bytes = 0


def write_progress(path: Path, progress: dict) -> None:
    """A human-readable line of where the protection is (monitoring, tests); never read back to resume."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(progress) + "\n")
