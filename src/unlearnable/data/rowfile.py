"""Row access to `.npy` files with pread/pwrite instead of a memory map.

A memory map keeps every page it has touched resident in the process, so reading a whole dataset through
one makes RSS grow with the dataset. Explicit reads of just the rows a batch needs keep memory flat: the
kernel's page cache still helps, but it is not charged to the job.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def create_npy(path: str | Path, shape: tuple[int, ...], dtype) -> np.memmap:
    """A writable memory map of a new `.npy` whose blocks are reserved up front.

    Writing through a map into a sparse file on a full disk kills the process with SIGBUS; reserving the
    blocks first turns that into an ordinary `OSError` (no space left) naming the file, before any work.
    """
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    try:
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    except OSError as e:
        del arr
        raise OSError(e.errno, os.strerror(e.errno), str(path)) from None
    return arr


class RowFile:
    def __init__(self, path: str | Path, writable: bool = False):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = reader(f)
            self.offset = f.tell()
        if fortran:
            raise ValueError(f"{path}: Fortran-ordered arrays are not supported")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.writable = writable
        self.fd = os.open(self.path, os.O_RDWR if writable else os.O_RDONLY)

    def __getstate__(self) -> dict:  # a DataLoader worker may receive it pickled: reopen, never share the fd
        return {"path": self.path, "writable": self.writable}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["writable"])

    @classmethod
    def create(cls, path: str | Path, shape: tuple[int, ...], dtype, fill: int = 0) -> "RowFile":
        """A new zero-filled (or `fill`-filled) array file, written without holding it in memory."""
        arr = create_npy(path, shape, dtype)
        if fill:
            arr[:] = fill
        arr.flush()
        del arr
        return cls(path, writable=True)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx) -> np.ndarray:
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        out = np.empty((len(idx),) + self.row_shape, dtype=self.dtype)
        flat = out.reshape(len(idx), -1).view(np.uint8)
        order = np.argsort(idx, kind="stable")
        i = 0
        while i < len(order):  # coalesce runs of consecutive rows into one read
            j = i
            while j + 1 < len(order) and idx[order[j + 1]] == idx[order[j]] + 1:
                j += 1
            start = int(idx[order[i]])
            if start < 0 or int(idx[order[j]]) >= self.shape[0]:
                raise IndexError(f"{self.path}: row index out of range")
            buf = os.pread(self.fd, self.row_bytes * (j - i + 1), self.offset + start * self.row_bytes)
            block = np.frombuffer(buf, dtype=np.uint8).reshape(j - i + 1, -1)
            flat[order[i:j + 1]] = block
            i = j + 1
        return out

    def write(self, idx, rows: np.ndarray) -> None:
        idx = np.asarray(idx, dtype=np.int64)
        rows = np.ascontiguousarray(rows, dtype=self.dtype).reshape(len(idx), -1).view(np.uint8)
        if len(idx) and np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):  # one run: one call
            self._pwrite_all(rows, self.offset + int(idx[0]) * self.row_bytes)
            return
        for r, i in enumerate(idx):
            self._pwrite_all(rows[r], self.offset + int(i) * self.row_bytes)

    def _pwrite_all(self, data: np.ndarray, offset: int) -> None:
        view = memoryview(data).cast("B")
        while len(view):  # pwrite may write less than asked (large writes, signals)
            n = os.pwrite(self.fd, view, offset)
            view, offset = view[n:], offset + n

    def read_all(self) -> np.ndarray:
        return self[np.arange(len(self))]

    def flush(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
