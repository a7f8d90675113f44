"""Resident memory of this process: its peak since start or since the last reset, and now."""

from __future__ import annotations

import os
import resource
import sys


def reset_peak_memory() -> bool:
    """Start a new peak-RSS window (Linux: writing 5 to /proc/self/clear_refs resets VmHWM).

    A conformance worker serves many cells; without the reset every cell would report the
    largest peak of all the cells before it. Returns False where the kernel does not allow it.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident memory of this process since start or the last ``reset_peak_memory``.

    Linux: VmHWM from /proc/self/status; elsewhere ru_maxrss (macOS reports bytes, Linux KiB).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def current_rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


__all__ = ["current_rss_bytes", "peak_rss_bytes", "reset_peak_memory"]
