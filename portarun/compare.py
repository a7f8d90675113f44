"""Parity metrics between two sets of outputs, as data (Polygraphy's comparator style).

``compare(actual, expected, tolerance)`` returns a ``Comparison`` that is truthy
when every output passes; each ``OutputComparison`` carries max abs/rel error,
NMSE, cosine similarity, the fraction of elements within tolerance and, for
class scores, top-1 agreement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ._callable import make_module_callable


@dataclass(frozen=True)
class Tolerance:
    """An element passes when ``|actual - expected| <= atol + rtol * |expected|`` (numpy.isclose)."""

    rtol: float = 1e-4
    atol: float = 1e-5
    min_cosine: float | None = None  # optional floor on cosine similarity (quantized precisions)
    min_within: float = 1.0  # fraction of elements that must be within rtol/atol

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class OutputComparison:
    name: str
    passed: bool
    shape: tuple[int, ...] | None = None
    max_abs: float = 0.0
    max_rel: float = 0.0
    mean_abs: float = 0.0
    nmse: float = 0.0
    cosine: float = 1.0
    within: float = 1.0  # fraction of elements within tolerance
    top1: float | None = None  # argmax agreement along the last axis, when it is a score vector
    reason: str = ""

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["shape"] = list(self.shape) if self.shape is not None else None
        return data


@dataclass
class Comparison:
    tolerance: Tolerance
    outputs: list[OutputComparison] = field(default_factory=list)
    # why the feeds make the result undefined (portarun.undefined): then agreement proves nothing and
    # disagreement is expected, so the comparison is a divergence, never a silent pass
    undefined: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs) and not self.undefined

    @property
    def divergent(self) -> bool:
        return bool(self.undefined)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def worst(self) -> OutputComparison | None:
        failing = [o for o in self.outputs if not o.passed]
        pool = failing or self.outputs
        return max(pool, key=lambda o: o.max_abs) if pool else None

    @property
    def max_abs(self) -> float:
        return max((o.max_abs for o in self.outputs), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((o.max_rel for o in self.outputs), default=0.0)

    @property
    def min_cosine(self) -> float:
        return min((o.cosine for o in self.outputs), default=1.0)

    def summary(self) -> str:
        if self.undefined:
            agree = "no outputs compared" if not self.outputs else \
                "outputs agree" if all(o.passed for o in self.outputs) else "outputs differ"
            return (f"DIVERGENCE ({agree}, but the result is undefined): "
                    + "; ".join(self.undefined[:3]) + (f"; and {len(self.undefined) - 3} more"
                                                       if len(self.undefined) > 3 else ""))
        if not self.outputs:
            return "no outputs compared"
        verdict = "PASS" if self.passed else "FAIL"
        worst = self.worst
        text = (f"{verdict} max_abs={self.max_abs:.3g} max_rel={self.max_rel:.3g} "
                f"cos={self.min_cosine:.6f}")
        if not self.passed and worst is not None:
            text += f" [{worst.name}: {worst.reason}]"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "tolerance": self.tolerance.to_dict(),
                "outputs": [o.to_dict() for o in self.outputs], "undefined": list(self.undefined)}


def compare_arrays(name: str, actual: Any, expected: Any, tolerance: Tolerance) -> OutputComparison:
    a = np.asarray(actual)
    e = np.asarray(expected)
    if a.shape != e.shape:
        return OutputComparison(name, False, shape=tuple(e.shape),
                                reason=f"shape {list(a.shape)} != expected {list(e.shape)}")
    if a.dtype.kind not in "fcbiu" or e.dtype.kind not in "fcbiu":
        equal = bool(np.array_equal(a, e))
        return OutputComparison(name, equal, shape=tuple(e.shape), reason="" if equal else "values differ")
    if a.size == 0:
        return OutputComparison(name, True, shape=tuple(e.shape))
    exact = e.dtype.kind in "biu" and a.dtype.kind in "biu"
    a64 = a.astype(np.float64)
    e64 = e.astype(np.float64)
    nan_a, nan_e = np.isnan(a64), np.isnan(e64)
    if not np.array_equal(nan_a, nan_e):
        return OutputComparison(name, False, shape=tuple(e.shape),
                                reason=f"NaN in {int(nan_a.sum())} actual vs {int(nan_e.sum())} expected elements")
    finite = ~nan_e
    a64, e64 = np.where(finite, a64, 0.0), np.where(finite, e64, 0.0)
    inf_mismatch = np.isinf(a64) | np.isinf(e64)
    if inf_mismatch.any():
        if not np.array_equal(a64[inf_mismatch], e64[inf_mismatch]):
            return OutputComparison(name, False, shape=tuple(e.shape), reason="infinities differ")
        a64, e64 = np.where(inf_mismatch, 0.0, a64), np.where(inf_mismatch, 0.0, e64)
    diff = np.abs(a64 - e64)
    max_abs = float(diff.max())
    max_rel = float((diff / np.maximum(np.abs(e64), np.finfo(np.float64).tiny)).max()) if max_abs > 0 else 0.0
    energy = float(np.sum(e64 * e64))
    nmse = float(np.sum(diff * diff) / energy) if energy > 0 else (0.0 if max_abs == 0 else float("inf"))
    na, ne = float(np.linalg.norm(a64)), float(np.linalg.norm(e64))
    if na == 0.0 and ne == 0.0:
        cosine = 1.0
    elif na == 0.0 or ne == 0.0:
        cosine = 0.0
    else:
        cosine = float(np.clip(np.dot(a64.ravel(), e64.ravel()) / (na * ne), -1.0, 1.0))
    if exact:
        ok = diff == 0
    else:
        ok = diff <= tolerance.atol + tolerance.rtol * np.abs(e64)
    within = float(ok.mean())
    top1 = None
    if e.ndim >= 2 and e.shape[-1] > 1 and e.dtype.kind == "f":
        top1 = float(np.mean(np.argmax(a64, axis=-1) == np.argmax(e64, axis=-1)))
    passed = within >= tolerance.min_within
    reason = ""
    if not passed:
        worst = np.unravel_index(int(np.argmax(diff - (tolerance.atol + tolerance.rtol * np.abs(e64)))), e.shape)
        reason = (f"{(1 - within) * 100:.3g}% of elements outside rtol={tolerance.rtol:g} atol={tolerance.atol:g}; "
                  f"worst at {list(map(int, worst))}: {a64[worst]:.6g} vs {e64[worst]:.6g}")
    if tolerance.min_cosine is not None and cosine < tolerance.min_cosine:
        passed = False
        reason = (reason + "; " if reason else "") + f"cosine {cosine:.6f} < {tolerance.min_cosine}"
    return OutputComparison(name, passed, shape=tuple(e.shape), max_abs=max_abs, max_rel=max_rel,
                            mean_abs=float(diff.mean()), nmse=nmse, cosine=cosine, within=within, top1=top1,
                            reason=reason)


def compare(actual: Mapping[str, Any], expected: Mapping[str, Any],
            tolerance: Tolerance | None = None, *, undefined: Sequence[str] = ()) -> Comparison:
    """Compare every output of ``expected`` with the same-named output of ``actual``.

    ``undefined``: reasons the result is undefined on these feeds (``portarun.undefined_behaviour``);
    any makes the comparison a divergence that does not pass.
    """
    tolerance = tolerance or Tolerance()
    result = Comparison(tolerance, undefined=list(undefined))
    for name, reference in expected.items():
        if name not in actual:
            result.outputs.append(OutputComparison(name, False, reason="missing from actual outputs"))
            continue
        result.outputs.append(compare_arrays(name, actual[name], reference, tolerance))
    return result


# `portarun.compare(actual, expected)` is this function even after `import portarun.compare` binds the
# package attribute to the module (portarun/__init__.py loads its names lazily)
make_module_callable(__name__, compare)
