"""Run full-size image work in a fresh process that never imports torch.

Importing torch and open_clip costs about 1.2 GB of resident memory (the CUDA wheel's libraries and
modules). Decoding a 64 MP photo takes another 192 MB, and doing it in the process that optimises the
noise would stack the two. A child interpreter imports only what the called function's module imports
(numpy, PIL, pandas), so the owner's peak memory is the larger of the two processes, not their sum.

The call travels to the child as a pickle on its stdin and the result (or exception) comes back on its
stdout: a pipe between this process and its own child, never a file. The child is `python -m
unlearnable.owner.lean`, not a multiprocessing spawn, so a caller's unguarded script is never re-run.
"""
from __future__ import annotations

import importlib
import logging
import os
import pickle
import subprocess
import sys
from typing import Any, Callable

from ..usage import own_peak_rss_mib

log = logging.getLogger(__name__)


def run_lean(fn: Callable, *args, **kwargs) -> Any:
    """`fn(*args, **kwargs)` in a child interpreter; its result returned, its exception raised here.

    `fn` must be importable by module and name, and its module must not import torch for the child to stay
    lean. The child's log lines go to this process's stderr."""
    call = pickle.dumps((fn.__module__, fn.__qualname__, args, kwargs, logging.getLogger().getEffectiveLevel()))
    proc = subprocess.run([sys.executable, "-m", __name__], input=call, stdout=subprocess.PIPE,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    if proc.returncode == 130:
        raise KeyboardInterrupt
    try:
        ok, value, peak_mib = pickle.loads(proc.stdout)
    except Exception:
        raise RuntimeError(f"{fn.__name__} died in its child process (exit code {proc.returncode})") from None
    if not ok:
        raise value
    log.info("%s ran in a process without torch: peak RSS %.0f MiB", fn.__name__, peak_mib)
    return value


def _child() -> int:
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # the real stdout carries the result alone
    module, name, args, kwargs, level = pickle.loads(sys.stdin.buffer.read())  # from our parent, through a pipe
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        fn = importlib.import_module(module)
        for part in name.split("."):
            fn = getattr(fn, part)
        value, ok = fn(*args, **kwargs), True
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # raised again in the parent, with its type and message
        value, ok = e, False
    peak = own_peak_rss_mib()
    try:
        reply = pickle.dumps((ok, value, peak))
    except Exception:  # an exception that cannot travel is sent as its text
        reply = pickle.dumps((False, RuntimeError(f"{type(value).__name__}: {value}"), peak))
    out.write(reply)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_child())
