"""The public entry points: load, compile, load_compiled, run helpers."""

from __future__ import annotations

import os
from typing import Any

from ._cache import cache_dir  # noqa: F401 - public as portarun.cache_dir
from .artifact import load_artifact, read_artifact
from .backend import Executable
from .errors import CheckFailedError, UnsupportedError, UsageError
from .loading import BUILTIN_PREFIX, load  # noqa: F401 - public as portarun.load
from .model import Model, quantization_of
from .registry import get_backend, resolve_target
from .types import Precision, Target


def compile(model: "Model | str | os.PathLike", target: Target | str, precision: Precision | str | None = None, *,
            isolate: bool = False, timeout: float | None = None, **options: Any) -> Executable:
    """Compile ``model`` for ``target`` (e.g. ``"onnxruntime:cpu"``) at ``precision``.

    Without a precision the model runs as it is written: fp32 for a float model, the precision its
    quantized ops carry (QDQ, ``quantize_dynamic`` output, QLinear ops) for a quantized one; the
    provenance says which (``precision_source``). Backend-specific ``options`` are listed by
    ``portarun backends`` and each backend's ``options``.
    ``isolate=True`` compiles and runs the backend in a worker process (a crash becomes an error,
    not the end of the caller); ``timeout=SECONDS`` bounds each compile and run, and implies
    isolation (an SDK call cannot be interrupted in-process).
    """
    loaded = load(model)
    resolved = resolve_target(target)
    backend = get_backend(resolved.backend)
    precision_source = "given"
    if precision is None:
        precision, precision_source = default_precision(loaded), "as the model is written"
    precision = Precision.parse(precision)
    backend.check_options(options)  # before any quantizing: a wrong option fails at once
    seconds = _seconds(timeout)
    quantized = None
    # A backend that quantizes float models itself (openvino with quantizer="nncf") takes the float model.
    native = backend.quantizes_float_models(options)
    if precision.is_quantized and quantization_of(loaded) is None and not native \
            and not backend.supports(loaded, resolved, precision, options):
        # A float model at a quantized precision: quantize it first with the defaults (and say so),
        # unless the backend quantizes float models itself (its own native path).
        if precision not in backend.precisions:
            raise UnsupportedError(f"{backend.name} does not support precision {precision}", backend=backend.name,
                                   hint=f"supported: {', '.join(p.value for p in backend.precisions)}")
        from .quantize import quantize

        quantized = quantize(loaded, precision)
        carried = quantization_of(quantized.model)
        if carried != precision.value:
            raise CheckFailedError(f"quantizing '{loaded.name}' to {precision} with the defaults met the accuracy "
                                   f"floor only as {carried or 'float'}",
                                   hint=f"compile with -p {carried}, or run `portarun quantize` with a lower floor")
        loaded = quantized.model
    if isolate or seconds is not None:
        # the backend compiles and runs in a worker process (portarun's own quantizing above stays here)
        from .isolated import compile_isolated

        executable = compile_isolated(loaded, backend, resolved, precision, options, timeout=seconds)
    else:
        executable = backend.compile(loaded, resolved, precision, **options)
    executable.provenance.details.setdefault("precision_source", precision_source)
    if loaded.notes:
        executable.provenance.details.setdefault("model_notes", list(loaded.notes))
    if quantized is not None:
        report = quantized.report
        executable.provenance.details["quantized_by_portarun"] = {
            "precision": report.precision, "floor": report.floor, "floor_met": report.floor_met,
            "weight_ratio": round(report.weight_ratio, 4), "cosine_min": report.accuracy.cosine_min,
            "nodes": report.counts(), "calibration": report.calibration,
            "note": "float model quantized implicitly with portarun.quantize defaults",
        }
    return executable


def _seconds(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    try:
        value = float(timeout)
    except (TypeError, ValueError):
        value = -1.0
    if not value > 0:
        raise UsageError(f"timeout must be a positive number of seconds, got {timeout!r}",
                         hint="e.g. timeout=60 (CLI: --timeout 60)")
    return value


def default_precision(model: Model) -> Precision:
    """The precision a model runs at when none is asked for: what its quantized ops carry, else fp32."""
    return Precision.parse(quantization_of(model) or "fp32")


def load_compiled(path: str | os.PathLike, target: Target | str | None = None, *,
                  rebuild: bool = False, isolate: bool = False, timeout: float | None = None) -> Executable:
    """Load an artifact written by ``Executable.save``; ``rebuild`` recompiles when it does not fit here.

    ``isolate`` / ``timeout`` as for ``compile``: the artifact is loaded and run in a worker process.
    """
    if isolate or timeout is not None:
        from .isolated import load_isolated

        return load_isolated(os.fspath(path), None if target is None else str(target), rebuild=rebuild,
                             timeout=_seconds(timeout))
    manifest = read_artifact(path)
    backend = get_backend(manifest.backend)
    return load_artifact(manifest, backend, resolve_target(target) if target is not None else None,
                         rebuild=rebuild)
