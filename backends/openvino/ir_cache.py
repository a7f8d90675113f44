"""The ONNX model as OpenVINO IR, cached by content, so a second compile skips the ONNX frontend.

OpenVINO's own CACHE_DIR skips compiling, but the compile still has to convert the
ONNX model first (for MiniLM that conversion, with the serialization it needs, took
longer than the cached compile itself). The IR is keyed by the ONNX model's content
hash and the OpenVINO version, written atomically, and read back memory-mapped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from portarun.plugin import Model, atomic_directory

from .devices import core, sdk

IR_XML = "model.xml"


def ir_folder(cache_dir: Path, model: Model) -> Path:
    version = re.sub(r"[^0-9A-Za-z.]+", "_", sdk().get_version())[:64]  # another frontend may convert differently
    return cache_dir / "ir" / f"{model.sha256[:40]}-{version}"


def read_cached(model: Model, cache_dir: Path, convert: Callable[[], object]):
    """(ov.Model, hit): the cached IR when present, else ``convert()`` stored as IR for next time."""
    folder = ir_folder(cache_dir, model)
    if (folder / IR_XML).is_file():
        try:
            return core().read_model(str(folder / IR_XML)), True
        except Exception:
            pass  # a damaged entry is rewritten below
    ov_model = convert()
    try:
        with atomic_directory(folder) as staging:
            sdk().save_model(ov_model, str(staging / IR_XML), compress_to_fp16=False)
    except OSError:
        return ov_model, False  # a read-only or full cache slows the next compile down, nothing more
    # Compile what the next run will read: a model read from IR hashes differently in OpenVINO's
    # compiled-model cache than the one the ONNX frontend built, so only this way does the cache hit.
    return core().read_model(str(folder / IR_XML)), False
