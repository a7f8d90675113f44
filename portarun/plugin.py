"""The public surface for backend authors: everything a backend may import from portarun.

A backend (in-tree under ``backends/`` or a third-party package registered through the
``portarun.backends`` entry-point group) imports only from here, from ``portarun``'s
top-level public API, and from its own vendor SDK. Names here are stable: a change to
one is a breaking change of the plugin API. Conformance and tools use the same surface.

The hooks a backend fills in are documented on ``Backend`` and ``Executable``:
``_supports(model, target, precision, options)``, ``_compile``, ``_run`` (and optionally
``_run_tails``),
``_save_payload(payload_dir)`` and ``_load_payload(payload_dir, source_model, manifest, target)``.
"""

from __future__ import annotations

from ._atomic import atomic_directory, atomic_file, atomic_write_bytes, atomic_write_text
from ._cache import backend_cache_dir, cache_dir
from ._sysinfo import cpu_count, cpu_name, environment
from .cpu_features import CpuFeatures, cpu_features, last_level_cache_bytes
from .progress import Progress, native_logs_quiet, native_logs_verbose, progress
from .artifact import Manifest, payload_file
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
    UnsupportedOpsError,
    UsageError,
    first_line,
)
from .model import PROTOBUF_LIMIT, Model, onnx_domain, opset_versions, quantization_of, stored_nbytes
from .model_checks import iter_graphs, used_names
from .models import default_dims_of
from .quantize.accuracy import AccuracyFloor, measure as measure_accuracy
from .quantize.calibration import RandomCalibration, load_samples
from .quantize.numerics import pack_int4
from .tails import Tails, host_tails, take_tail
from .types import Device, Precision, Support, Target, TensorSpec, np_dtype

__all__ = [
    # base classes and the hooks' helpers
    "Backend", "Executable", "Manifest", "Provenance", "check_feeds", "import_sdk", "payload_file",
    "quantization_support",
    # output tails (Executable._run_tails): the request's type and its host-side cut
    "Tails", "host_tails", "take_tail",
    # models and types
    "Model", "PROTOBUF_LIMIT", "default_dims_of", "iter_graphs", "onnx_domain", "opset_versions", "quantization_of",
    "stored_nbytes", "used_names",
    "Device", "Precision", "Support", "Target", "TensorSpec", "np_dtype",
    # a backend's own quantizer (OpenVINO's NNCF): calibration feeds, the accuracy floor, int4 packing
    "AccuracyFloor", "RandomCalibration", "load_samples", "measure_accuracy", "pack_int4",
    # files, caches, host facts
    "atomic_directory", "atomic_file", "atomic_write_bytes", "atomic_write_text", "backend_cache_dir",
    "cache_dir", "cpu_count", "cpu_features", "cpu_name", "CpuFeatures", "environment",
    "last_level_cache_bytes",
    # progress on stderr, and whether the SDK's native logs are to be kept quiet
    "Progress", "native_logs_quiet", "native_logs_verbose", "progress",
    # errors and their one-line form
    "ArtifactCorruptError", "ArtifactError", "ArtifactIncompatibleError", "BackendError", "BackendNotFoundError",
    "BackendUnavailableError", "CheckFailedError", "CompileError", "InputError", "InvalidPrecisionError",
    "InvalidTargetError", "ModelError", "PortarunError", "RunError", "UnsupportedError", "UnsupportedOpsError",
    "UsageError", "first_line",
]
