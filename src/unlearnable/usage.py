"""Peak memory figures, without torch (every job and the lean child report them)."""
from __future__ import annotations

import resource


def peak_rss_mib() -> float:
    """Peak resident memory of this process and of any child it waited for (Linux reports KiB)."""
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024


def own_peak_rss_mib() -> float:
    """This process's own peak resident memory since it started its program: `VmHWM`. (`ru_maxrss` would
    also count the parent's peak, which a child inherits through fork and exec.)"""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
