"""Fault injection for tests: imported at start-up by every Python process whose path holds this folder.

With UNLEARNABLE_KILL_AT=N, the N-th write (pwrite), rename, replace, unlink or rmdir of a path under
UNLEARNABLE_KILL_UNDER, counted across all processes of the run in the file UNLEARNABLE_KILL_COUNTER, is
followed by SIGKILL of the process that made it: a real kill, leaving what a kill leaves. Without
UNLEARNABLE_KILL_AT the calls are only counted and listed (one line each) in the counter file.
"""
import os
import signal

_AT = int(os.environ.get("UNLEARNABLE_KILL_AT", "0") or 0)
_UNDER = os.environ.get("UNLEARNABLE_KILL_UNDER")
_COUNTER = os.environ.get("UNLEARNABLE_KILL_COUNTER")
_SKIP = os.environ.get("UNLEARNABLE_KILL_SKIP") or None  # paths holding this are neither counted nor killed at


def _watch(name, fn):
    def call(*args, **kwargs):
        try:
            if name == "pwrite":
                path = os.readlink(f"/proc/self/fd/{args[0]}")
            elif kwargs.get("dir_fd") is not None:  # shutil.rmtree: a name inside an open folder
                path = os.path.join(os.readlink(f"/proc/self/fd/{kwargs['dir_fd']}"), os.fsdecode(args[0]))
            else:
                path = os.path.abspath(os.fsdecode(args[0]))
        except (OSError, TypeError, IndexError):
            path = None
        try:
            return fn(*args, **kwargs)
        finally:
            if path is not None and path.startswith(_UNDER) and not (_SKIP and _SKIP in path):
                with open(_COUNTER, "a") as f:
                    f.write(f"{name} {os.fsdecode(path)}\n")
                with open(_COUNTER) as f:
                    n = sum(1 for _ in f)
                if n == _AT:
                    os.kill(os.getpid(), signal.SIGKILL)
    return call


if _UNDER and _COUNTER:
    for _name in ("replace", "rename", "unlink", "rmdir", "pwrite"):
        setattr(os, _name, _watch(_name, getattr(os, _name)))
