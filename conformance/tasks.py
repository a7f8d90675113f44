"""What a worker process does for one case: reference outputs, or compile + check + measure on a target.

Functions here run inside ``isolation.IsolatedWorker`` and return plain data
(dicts of numbers, strings and arrays) so results survive the trip back.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import portarun
from portarun import Model, Precision, PortarunError, Target, Tolerance, undefined_behaviour
from portarun.benchmark import benchmark_executable, reset_peak_memory
from portarun.cost import weight_bytes
from portarun.model import quantization_of
from portarun.registry import resolve_target

from .cases import Case


def reference_task(case: Case) -> dict[str, Any]:
    """Outputs of the case's reference (fp32, the model as written) on the case's feeds."""
    model = case.load()
    feeds = case.feeds(model)
    reference = case.reference_target(model)
    with portarun.compile(model, reference, quantization_of(model) or "fp32") as exe:
        outputs = exe.run(feeds)
        provenance = exe.provenance.to_dict()
    return {"reference": reference, "outputs": outputs, "provenance": provenance}


def quantizer() -> Any | None:
    """``portarun.quantize`` when the quantization package provides its entry point, else None."""
    candidate = getattr(portarun, "quantize", None)
    if callable(candidate):
        return candidate
    inner = getattr(candidate, "quantize", None)
    return inner if callable(inner) else None


def prepare_model(model: Model, precision: Precision, case: Case) -> tuple[Model, str]:
    """The model to compile at ``precision``: quantized first when the precision asks for it and a
    quantizer exists. Calibration uses other random feeds than the check (seed + 1): calibrating on
    the very inputs that are then compared would flatter the result. Returns (model, note)."""
    if not precision.is_quantized or quantization_of(model) is not None:
        return model, ""
    quantize = quantizer()
    if quantize is None:
        return model, ""
    samples = case.user_samples(model) or []
    if len(samples) > 1:  # the user's data: calibrate on all but the first sample, which the check uses
        result = quantize(model, precision, calibration=samples[1:], seed=case.seed + 1)
        source = f"calibrated on {len(samples) - 1} of your samples"
    else:
        result = quantize(model, precision, dims=dict(case.dims), seed=case.seed + 1)
        source = f"random calibration, seed {case.seed + 1}"
    quantized = getattr(result, "model", result)
    if not isinstance(quantized, Model):
        quantized = portarun.load(quantized)
    floor = getattr(result, "floor_met", None)
    return quantized, (f"quantized to {precision} by portarun.quantize ({source})"
                       + ("" if floor is None else f"; its accuracy floor was {'met' if floor else 'NOT met'}"))


def check_provenance(requested: Target, provenance: dict[str, Any], precision: Precision) -> str:
    """'' when what ran is what was asked for; else why not (a silent fallback is a failure)."""
    ran = Target.parse(provenance.get("target", ""))
    if ran.backend != requested.backend:
        return f"requested backend {requested.backend}, but {ran.backend} ran"
    if requested.device and ran.device and ran.device != requested.device:
        return f"requested device {requested.device}, but it ran on {ran.device} (silent fallback)"
    if requested.index is not None and ran.index is not None and ran.index != requested.index:
        return f"requested device index {requested.index}, but it ran on {ran.index}"
    try:
        reported = Precision.parse(str(provenance.get("precision", "")).split()[0])
    except (PortarunError, IndexError):
        return ""  # a backend-specific precision text (e.g. "f32 hint"): nothing to compare
    if reported is not precision:
        return f"requested precision {precision}, but the backend reports {reported}"
    return ""


def case_task(case: Case, target: str, precision: str, reference_outputs: dict[str, np.ndarray],
              tolerance: dict[str, Any], *, reference: str = "reference:cpu", runs: int = 20, warmup: int = 3,
              budget_s: float = 5.0, localize_failures: bool = True,
              options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compile ``case`` for ``target`` at ``precision``, check parity and provenance, measure performance."""
    precision_enum = Precision.parse(precision)
    requested = resolve_target(target)
    model = case.load()
    feeds = case.feeds(model)
    result: dict[str, Any] = {"status": "error", "message": "", "notes": []}
    try:
        backend = portarun.get_backend(requested.backend)
        model, note = prepare_model(model, precision_enum, case)
        if note:
            result["notes"].append(note)
        support = backend.supports(model, requested, precision_enum, options)
        if not support:
            return {**result, "status": "skip", "message": support.reason}
        result["weight_bytes"] = weight_bytes(model)
        window = ("worker peak RSS over compile and runs of this cell" if reset_peak_memory()
                  else "worker peak RSS since it started (no per-cell reset on this OS)")
        with portarun.compile(model, requested, precision_enum, **(options or {})) as exe:
            result["provenance"] = exe.provenance.to_dict()
            outputs = exe.run(feeds)
            comparison = portarun.compare(outputs, reference_outputs, Tolerance(**tolerance),
                                          undefined=undefined_behaviour(model, feeds))
            if comparison.divergent:
                result["divergence"] = list(comparison.undefined)
            result["comparison"] = comparison.to_dict()
            result["summary"] = comparison.summary()
            mismatch = check_provenance(requested, result["provenance"], precision_enum)
            result["provenance_ok"] = not mismatch
            bench = benchmark_executable(exe, feeds, warmup=warmup, runs=runs, budget_s=budget_s,
                                         batch_axis=case.batch_axis, tokens_axis=case.tokens_axis, dims=case.dims,
                                         peak_memory_source=window)
            result["benchmark"] = bench.to_dict()
        if mismatch:
            result.update(status="fail", message=f"provenance: {mismatch}")
        elif comparison:
            result.update(status="pass", message="")
        else:
            result.update(status="fail", message=comparison.summary())
        if not comparison and localize_failures:
            result["localization"] = _localize(model, str(requested), precision_enum, feeds, reference,
                                               Tolerance(**tolerance), options)
        return result
    except PortarunError as exc:
        return {**result, "status": "error", "message": str(exc)}


def _localize(model: Model, target: str, precision: Precision, feeds: dict[str, np.ndarray], reference: str,
              tolerance: Tolerance, options: dict[str, Any] | None) -> dict[str, Any]:
    from .localize import localize

    start = time.perf_counter()
    try:
        found = localize(model, target, precision, feeds, reference=reference, tolerance=tolerance, options=options)
        data = found.to_dict()
        data["summary"] = found.summary()
    except Exception as exc:  # localization is a diagnosis: its failure must not hide the case's verdict
        data = {"found": False, "message": f"localization failed: {type(exc).__name__}: {exc}",
                "summary": f"localization failed: {exc}"}
    data["seconds"] = time.perf_counter() - start
    return data
