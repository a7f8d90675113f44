"""Where portarun and its backends keep caches (EP engines, compiled kernels, IR, generated data)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache root: ``PORTARUN_CACHE_DIR``, then ``$XDG_CACHE_HOME/portarun``, then ``~/.cache/portarun``."""
    explicit = os.environ.get("PORTARUN_CACHE_DIR")
    if explicit:
        path = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "portarun"
    path.mkdir(parents=True, exist_ok=True)
    return path


def backend_cache_dir(name: str, override: "str | os.PathLike | None" = None) -> Path:
    """The cache folder of backend ``name``: ``override`` (its ``cache_dir`` compile option) when
    given, else ``<cache root>/<name>``; created if missing."""
    path = Path(override) if override else cache_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path
