"""Facts about this process that coordinator and worker both report."""

from __future__ import annotations

import os
import resource


def resident_bytes() -> int:
    """Resident set size now (Linux: /proc/self/statm), else the peak from getrusage."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
