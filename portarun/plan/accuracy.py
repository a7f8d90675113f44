"""Accuracy of a candidate's outputs against the fp32 reference's (portarun.compare), and against labels."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..compare import Tolerance, compare
from .candidates import Accuracy

# Only the metrics are read, not the pass/fail verdict: the plan's floor decides.
_METRICS_ONLY = Tolerance(rtol=0.0, atol=0.0, min_within=0.0)


def exact_match(predicted: Any, labels: np.ndarray) -> float:
    """Fraction of samples whose argmax (class scores) or tokens (already ids) equal the labels."""
    predicted = np.asarray(predicted)
    if predicted.dtype.kind == "f":
        predicted = np.argmax(predicted, axis=-1)
    labels = np.asarray(labels)
    if predicted.shape != labels.shape:
        predicted = predicted.reshape(labels.shape[0], -1)[:, :int(np.prod(labels.shape[1:]) or 1)]
        predicted = predicted.reshape(labels.shape)
    return float(np.mean(predicted == labels))


def accuracy_of(outputs: Mapping[str, Any], reference: Mapping[str, Any], *, labels: np.ndarray | None = None,
                samples: int | None = None, only: tuple[str, ...] | None = None) -> Accuracy:
    """Cosine (min over outputs), top-1 agreement, max abs error vs ``reference``; ``exact`` vs ``labels``
    on the first output. ``only`` restricts the comparison to some outputs (a decoder's logits)."""
    expected = {k: v for k, v in reference.items() if only is None or k in only}
    comparison = compare(outputs, expected, _METRICS_ONLY)
    top1 = [o.top1 for o in comparison.outputs if o.top1 is not None]
    result = Accuracy(cosine=comparison.min_cosine, top1=min(top1) if top1 else None,
                      max_abs=comparison.max_abs, samples=samples)
    if labels is not None:
        first = next(iter(expected))
        result.exact = exact_match(outputs[first], labels)
    return result


__all__ = ["accuracy_of", "exact_match"]
