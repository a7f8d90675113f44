"""The accuracy floor: what a quantized model must keep, measured against the float model.

Metrics are computed per validation sample and per output: cosine similarity
of the flattened output, top-1 agreement along the last axis (for score
vectors), and max / mean absolute error. The floor holds when the worst
sample meets every bound that is set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError
from ..types import Precision

# The floors the issue asks for, per precision: quantization must keep at least this much.
DEFAULT_COSINE = {Precision.INT8_WEIGHT: 0.999, Precision.INT8: 0.995, Precision.INT4_WEIGHT: 0.98}


@dataclass(frozen=True)
class AccuracyFloor:
    """Bounds a quantized model must meet on every validation sample (None: not checked)."""

    cosine: float | None = None  # minimum cosine similarity per sample and output
    top1: float | None = None  # minimum fraction of argmax agreement (classifier outputs)
    max_abs: float | None = None  # maximum absolute error
    mean_abs: float | None = None  # maximum mean absolute error

    @classmethod
    def parse(cls, value: "AccuracyFloor | str | dict | None", precision: Precision) -> "AccuracyFloor":
        """From ``"cosine=0.99,top1=0.95"``, a dict, or None (the precision's default cosine floor)."""
        if isinstance(value, AccuracyFloor):
            return value
        if value is None:
            return cls(cosine=DEFAULT_COSINE.get(precision, 0.99))
        if isinstance(value, str):
            items: dict[str, Any] = {}
            for part in filter(None, (p.strip() for p in value.replace(";", ",").split(","))):
                if "=" not in part:
                    raise UsageError(f"accuracy floor '{part}' is not NAME=VALUE",
                                     hint="e.g. cosine=0.99,top1=0.95,max_abs=0.1")
                key, number = part.split("=", 1)
                items[key.strip().replace("-", "_")] = number
            value = items
        value = {str(k).strip().replace("-", "_"): v for k, v in value.items()}
        known = {f for f in cls.__dataclass_fields__}
        unknown = [k for k in value if k not in known]
        if unknown:
            raise UsageError(f"unknown accuracy floor metric(s) {', '.join(unknown)}",
                             hint=f"use {', '.join(sorted(known))}")
        try:
            parsed = {k: float(v) for k, v in value.items()}
        except (TypeError, ValueError):
            raise UsageError(f"accuracy floor values must be numbers, got {value}") from None
        for key in ("cosine", "top1"):
            if key in parsed and not 0.0 <= parsed[key] <= 1.0:
                raise UsageError(f"accuracy floor {key}={parsed[key]} must lie in [0, 1]")
        return cls(**parsed)

    def text(self) -> str:
        parts = [f"{k}{'>=' if k in ('cosine', 'top1') else '<='}{v:g}" for k, v in asdict(self).items()
                 if v is not None]
        return ", ".join(parts) or "none"


def _digits(cosine: float) -> str:
    """Six decimals, or as many as it takes to show a cosine is below 1 (0.99999994, not 1.000000)."""
    text = f"{cosine:.6f}"
    return f"{cosine:.10g}" if text == "1.000000" and cosine < 1.0 - COSINE_ROUNDING else text


@dataclass
class Accuracy:
    """The quantized model's outputs vs the float model's, over the validation samples."""

    samples: int
    cosine_min: float
    cosine_mean: float
    top1: float | None
    max_abs: float
    mean_abs: float
    nmse: float  # mean over samples and outputs; the sensitivity ranking uses it
    passed: bool = True
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        top1 = f", top-1 {self.top1:.4f}" if self.top1 is not None else ""
        return (f"cosine min {_digits(self.cosine_min)} mean {_digits(self.cosine_mean)}{top1}, "
                f"max abs {self.max_abs:.4g}, mean abs {self.mean_abs:.4g} ({self.samples} samples)")


COSINE_ROUNDING = 1e-12  # float64 cosines of equal vectors land within ~1e-16 of 1


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def measure(actual: list[dict[str, np.ndarray]], expected: list[dict[str, np.ndarray]],
            floor: AccuracyFloor) -> Accuracy:
    """Compare per sample and output; ``passed`` says whether ``floor`` holds."""
    cosines, top1s, max_abs, mean_abs, nmses = [], [], 0.0, [], []
    for got, want in zip(actual, expected):
        for name, ref in want.items():
            ref64 = np.asarray(ref, np.float64).ravel()
            out64 = np.asarray(got[name], np.float64).ravel()
            if ref64.size == 0 or np.asarray(ref).dtype.kind != "f":
                continue
            diff = np.abs(out64 - ref64)
            cosines.append(_cosine(out64, ref64))
            max_abs = max(max_abs, float(diff.max()))
            mean_abs.append(float(diff.mean()))
            energy = float(np.sum(ref64 * ref64))
            nmses.append(float(np.sum(diff * diff) / energy) if energy > 0 else float(diff.max() > 0))
            ref_arr = np.asarray(ref)
            # class scores: [batch, classes], or anything named like logits ([batch, seq, vocab])
            if ref_arr.shape and ref_arr.shape[-1] > 1 and (ref_arr.ndim == 2 or "logit" in name.lower()):
                top1s.append(float(np.mean(np.argmax(np.asarray(got[name]), -1) == np.argmax(ref_arr, -1))))
    if not cosines:
        raise UsageError("the model has no float outputs to measure accuracy on")
    acc = Accuracy(samples=len(expected), cosine_min=min(cosines), cosine_mean=float(np.mean(cosines)),
                   top1=min(top1s) if top1s else None, max_abs=max_abs, mean_abs=float(np.mean(mean_abs)),
                   nmse=float(np.mean(nmses)))
    # float64 rounding puts the cosine of identical outputs a few ulps off 1: a floor of 1 holds there
    if floor.cosine is not None and acc.cosine_min < floor.cosine - COSINE_ROUNDING:
        acc.failures.append(f"cosine {acc.cosine_min:.10g} < {floor.cosine:g}")  # digits enough to see the gap
    if floor.top1 is not None:
        if acc.top1 is None:
            raise UsageError("a top-1 floor needs an output of class scores ([batch, classes] or named *logits*)")
        if acc.top1 < floor.top1:
            acc.failures.append(f"top-1 {acc.top1:.4f} < {floor.top1:g}")
    if floor.max_abs is not None and acc.max_abs > floor.max_abs:
        acc.failures.append(f"max abs {acc.max_abs:.4g} > {floor.max_abs:g}")
    if floor.mean_abs is not None and acc.mean_abs > floor.mean_abs:
        acc.failures.append(f"mean abs {acc.mean_abs:.4g} > {floor.mean_abs:g}")
    acc.passed = not acc.failures
    return acc
