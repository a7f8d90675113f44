"""The public entry points: load, compile, load_compiled, run helpers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import onnx

from .backend import Executable
from .errors import CheckFailedError, ModelNotFoundError, UnsupportedError, UsageError
from .model import Model, quantization_of
from .registry import get_backend, resolve_target
from .types import Precision, Target

BUILTIN_PREFIX = "builtin:"


def cache_dir() -> Path:
    """Where portarun keeps caches (EP engines, compiled kernels, generated test data).

    ``PORTARUN_CACHE_DIR`` wins, then ``$XDG_CACHE_HOME/portarun``, then ``~/.cache/portarun``.
    """
    explicit = os.environ.get("PORTARUN_CACHE_DIR")
    if explicit:
        path = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "portarun"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load(source: "Model | onnx.ModelProto | str | os.PathLike", *, check: bool = True) -> Model:
    """A validated Model from a path, an ``onnx.ModelProto``, or a built-in name (``builtin:mlp``).

    A bare built-in name (``mlp``) works too when no file of that name exists.
    """
    if isinstance(source, Model):
        return source
    if isinstance(source, onnx.ModelProto):
        return Model.from_proto(source, check=check)
    text = os.fspath(source)
    from . import models

    if text.startswith(BUILTIN_PREFIX):
        return models.build(text[len(BUILTIN_PREFIX):])
    if not Path(text).exists() and text in models.names():
        return models.build(text)
    try:
        return Model.load(text, check=check)
    except ModelNotFoundError as exc:
        exc.hint = f"check the path; built-in models are {', '.join(BUILTIN_PREFIX + n for n in models.names())}"
        raise


def compile(model: "Model | str | os.PathLike", target: Target | str, precision: Precision | str = "fp32", *,
            isolate: bool = False, timeout: float | None = None, **options: Any) -> Executable:
    """Compile ``model`` for ``target`` (e.g. ``"onnxruntime:cpu"``) at ``precision``.

    Backend-specific ``options`` are listed by ``portarun backends`` and each backend's ``options``.
    ``isolate=True`` compiles and runs the backend in a worker process (a crash becomes an error,
    not the end of the caller); ``timeout=SECONDS`` bounds each compile and run, and implies
    isolation (an SDK call cannot be interrupted in-process).
    """
    loaded = load(model)
    resolved = resolve_target(target)
    backend = get_backend(resolved.backend)
    precision = Precision.parse(precision)
    if isolate or timeout is not None:
        from .isolated import compile_isolated

        backend.check_options(options)
        return compile_isolated(loaded, backend, resolved, precision, options, timeout=_seconds(timeout))
    quantized = None
    # A ``quantizer`` option picks the backend's own quantizer (openvino: "nncf"): it takes the float model.
    native = options.get("quantizer") is not None
    if precision.is_quantized and quantization_of(loaded) is None and not native \
            and not backend.supports(loaded, resolved, precision):
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
    executable = backend.compile(loaded, resolved, precision, **options)
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


def load_compiled(path: str | os.PathLike, target: Target | str | None = None, *,
                  rebuild: bool = False, isolate: bool = False, timeout: float | None = None) -> Executable:
    """Load an artifact written by ``Executable.save``; ``rebuild`` recompiles when it does not fit here.

    ``isolate`` / ``timeout`` as for ``compile``: the artifact is loaded and run in a worker process.
    """
    if isolate or timeout is not None:
        from .isolated import load_isolated

        return load_isolated(os.fspath(path), None if target is None else str(target), rebuild=rebuild,
                             timeout=_seconds(timeout))
    from .artifact import load_artifact

    return load_artifact(path, target, rebuild=rebuild)
