"""The one place where a workflow job sets up logging, threads and error reporting.

A user-facing error (bad config, missing or corrupt file) ends the job with exactly one line on stderr
and in the rule's log, and a non-zero exit; anything else keeps its traceback for debugging.
"""
from __future__ import annotations

import logging
import sys
from typing import Callable

from . import UnlearnableError


def run_job(log_path: str | None, threads: int, fn: Callable[[], object]) -> None:
    import torch

    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    log_file = None
    if log_path:
        log_file = open(log_path, "w", buffering=1)
        handlers.append(logging.StreamHandler(log_file))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)
    logging.getLogger("root").setLevel(logging.INFO)
    for noisy in ("alembic", "mlflow", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(max(1, threads))
    try:
        fn()
    except UnlearnableError as e:
        line = f"error: {e}".replace("\n", " ")
        if log_file:
            log_file.write(line + "\n")
        print(line, file=sys.stderr)
        sys.exit(1)
    except BaseException:
        if log_file:
            import traceback

            traceback.print_exc(file=log_file)
        raise
    finally:
        if log_file:
            log_file.flush()
