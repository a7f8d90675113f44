"""The public surface for backend authors: everything a backend may import from portarun.

A backend (in-tree under ``backends/`` or a third-party package registered through the
``portarun.backends`` entry-point group) imports only from here, from ``portarun``'s
top-level public API, and from its own vendor SDK. Names here are stable: a change to
one is a breaking change of the plugin API. Conformance and tools use the same surface.
"""

from __future__ import annotations

from ._atomic import atomic_directory, atomic_file, atomic_write_bytes, atomic_write_text
from ._sysinfo import cpu_count, cpu_name, environment
from .api import cache_dir
from .backend import Backend, Executable, Provenance, check_feeds, import_sdk, quantization_support
from .errors import (
    ArtifactCorruptError,
    ArtifactError,
    ArtifactIncompatibleError,
    BackendError,
    BackendNotFoundError,
    BackendUnavailableError,
    CheckFailedError,
    CompileError,
    InputError,
    InvalidPrecisionError,
    InvalidTargetError,
    ModelError,
    PortarunError,
    RunError,
    UnsupportedError,
    UsageError,
)
from .model import Model, quantization_of
from .types import Device, Precision, Support, Target, TensorSpec, np_dtype

__all__ = [
    # base classes and the hooks' helpers
    "Backend", "Executable", "Provenance", "check_feeds", "import_sdk", "quantization_support",
    # models and types
    "Model", "quantization_of", "Device", "Precision", "Support", "Target", "TensorSpec", "np_dtype",
    # files, caches, host facts
    "atomic_directory", "atomic_file", "atomic_write_bytes", "atomic_write_text", "cache_dir",
    "cpu_count", "cpu_name", "environment",
    # errors
    "ArtifactCorruptError", "ArtifactError", "ArtifactIncompatibleError", "BackendError", "BackendNotFoundError",
    "BackendUnavailableError", "CheckFailedError", "CompileError", "InputError", "InvalidPrecisionError",
    "InvalidTargetError", "ModelError", "PortarunError", "RunError", "UnsupportedError", "UsageError",
]
