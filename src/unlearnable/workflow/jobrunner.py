"""The one place where a workflow job sets up logging, threads and error reporting.

A user-facing error (bad config, missing or corrupt file) ends the job with exactly one line on stderr
and in the rule's log, and a non-zero exit; anything else keeps its traceback for debugging.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Callable

from .. import UnlearnableError
from ..faults import describe_fault
from ..usage import peak_rss_mib


def run_job(log_path: str | None, threads: int, fn: Callable[[], object], where: str | None = None) -> None:
    """`where` (the job's output) is named when a full disk or a permission error stops the job."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    log_file = None
    if log_path:
        log_file = open(log_path, "w", buffering=1)
        handlers.append(logging.StreamHandler(log_file))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)
    logging.getLogger("root").setLevel(logging.INFO)
    logging.raiseExceptions = False  # a log line that cannot be written (full disk) must not print a traceback
    for noisy in ("alembic", "mlflow", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    t0 = time.time()
    try:
        with job_threads(threads):
            fn()
        logging.getLogger(__name__).info("usage: wall %.1f s, peak RSS %.0f MiB", time.time() - t0, peak_rss_mib())
    except UnlearnableError as e:
        _fail(f"error: {e}", log_file)
    except BaseException as e:
        if log_file:
            import traceback

            with contextlib.suppress(OSError):
                traceback.print_exc(file=log_file)
        fault = describe_fault(e, where) if isinstance(e, Exception) else None
        if fault:  # the traceback is in the log; the user gets one line naming the path
            _fail(f"error: {fault}", log_file)
        raise
    finally:
        if log_file:
            with contextlib.suppress(OSError):
                log_file.flush()


@contextlib.contextmanager
def job_threads(threads: int):
    """torch's threads for this job, without importing torch: a job that imports it later reads
    OMP_NUM_THREADS, and a job that needs no torch (a defence, a manifest, the summary) never pays for it. The
    variable is set only while the job runs: a caller in the same process (a test, a notebook) keeps its
    environment, and so do the programs it starts afterwards (`nproc` reads the variable too)."""
    n = max(1, threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
        yield
        return
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(n)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before


def _fail(line: str, log_file) -> None:
    line = line.replace("\n", " ")
    if log_file:
        with contextlib.suppress(OSError):  # the log may sit on the full disk itself
            log_file.write(line + "\n")
            log_file.flush()
    print(line, file=sys.stderr)
    sys.exit(1)
