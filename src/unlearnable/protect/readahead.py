"""The noise rows of a pass's next batch, read while the current batch computes."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ..data.rowfile import RowFile


class ReadAhead:
    """Reads batch j + 1's rows on a worker thread while batch j runs (the reads are `pread` calls, which release
    the GIL; on a GPU the device computes meanwhile, so the next batch is ready when it is done). A batch that
    shares units with the one before it (a pass's folded tail) is read only after that one is written."""

    def __init__(self, noise: RowFile, batches: list[np.ndarray], start: int):
        self.noise, self.batches = noise, batches
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="noise-read-ahead")
        self.pending: dict[int, Future] = {}
        if start < len(batches):
            self.pending[start] = self.pool.submit(noise.__getitem__, batches[start])

    def rows(self, j: int) -> np.ndarray:
        """Batch j's rows, and the read of batch j + 1's started."""
        ahead = self.pending.pop(j, None)
        rows = ahead.result() if ahead is not None else self.noise[self.batches[j]]
        nxt = j + 1
        if nxt < len(self.batches) and not np.intersect1d(self.batches[nxt], self.batches[j]).size:
            self.pending[nxt] = self.pool.submit(self.noise.__getitem__, self.batches[nxt])
        return rows

    def __enter__(self) -> "ReadAhead":
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
