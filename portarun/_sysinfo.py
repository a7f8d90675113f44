"""Facts about the host machine, for provenance and reports."""

from __future__ import annotations

import functools
import os
import platform


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def environment() -> dict[str, str]:
    """A compact description of where a measurement was taken."""
    from ._version import __version__
    from .cpu_features import cpu_features

    return {
        "portarun": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cpu_count": str(cpu_count()),
        "cpu_isa": cpu_features().describe(),  # what decides bf16/fp16/int8 results (VNNI, AMX, ...)
    }
