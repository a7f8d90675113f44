"""What the classic-ML lowerings (``ai.onnx.ml``) share: post transforms and class labels.

The formulas follow ONNX Runtime's CPU kernels (onnxruntime/core/providers/cpu/ml/ml_common.h),
because the files these ops come from (skl2onnx, onnxmltools) are checked against ORT:
labels must match it exactly and scores to float rounding.
"""

from __future__ import annotations

from typing import Any

from ..hostvalues import HostStrings
from ._common import jnp, np

ML = "ai.onnx.ml"

# TreeEnsemble (ai.onnx.ml 5) writes post_transform / aggregate_function as ints
POST_TRANSFORMS = ("NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT")


def post_transform_name(value: Any) -> str:
    if isinstance(value, (int, np.integer)):
        return POST_TRANSFORMS[int(value)]
    return str(value or "NONE")


def logistic(v):
    # ORT: 1 / (1 + exp(-|v|)), mirrored for negative v (no overflow)
    e = 1 / (1 + jnp.exp(-jnp.abs(v)))
    return jnp.where(v < 0, 1 - e, e)


def erfinv_approx(x):
    # ORT's ErfInv is Winitzki's approximation (a = 0.147), not the exact inverse: match it
    sgn = jnp.where(x < 0, -1.0, 1.0).astype(x.dtype)
    y = (1 - x) * (1 + x)
    log = jnp.log(y)
    v = 2 / (3.14159 * 0.147) + 0.5 * log
    v2 = 1 / 0.147 * log
    return sgn * jnp.sqrt(-v + jnp.sqrt(v * v - v2))


def probit(v):
    return jnp.asarray(1.41421356, v.dtype) * erfinv_approx(2 * v - 1)


def softmax(v, axis: int = -1):
    shifted = v - jnp.max(v, axis=axis, keepdims=True)
    e = jnp.exp(shifted)
    return e / jnp.sum(e, axis=axis, keepdims=True)


def softmax_zero(v, axis: int = -1):
    # ORT skips (near-)zero scores: they stay (near) zero instead of becoming exp(-max)
    vmax = jnp.max(v, axis=axis, keepdims=True)
    nonzero = jnp.abs(v) > 1e-7
    e = jnp.where(nonzero, jnp.exp(v - vmax), v * jnp.exp(-vmax))
    total = jnp.sum(jnp.where(nonzero, e, 0), axis=axis, keepdims=True)
    return e / total


def apply_post_transform(scores, name: str):
    """ORT's write_scores for two or more columns."""
    if name == "LOGISTIC":
        return logistic(scores)
    if name == "SOFTMAX":
        return softmax(scores)
    if name == "SOFTMAX_ZERO":
        return softmax_zero(scores)
    if name == "PROBIT":
        return probit(scores)
    return scores


def class_labels(n) -> tuple[np.ndarray, bool]:
    """The classifier's labels (int64 or object strings) and whether they are strings."""
    strings = n.attr("classlabels_strings")
    if strings:
        return np.asarray(strings, dtype=object), True
    ints = n.attr("classlabels_int64s")
    if ints is None:
        ints = n.attr("classlabels_ints")
    return np.asarray(ints if ints is not None else [], dtype=np.int64), False


def label_output(index, labels: np.ndarray, is_string: bool, literal=None):
    """Labels chosen by ``index``; ``literal`` (bool mask) takes the index itself as the label
    (ORT's 0/1 answer for two classes that are not the binary case)."""
    index = jnp.asarray(index).astype(jnp.int32)
    if is_string:
        return HostStrings(index, labels)
    values = jnp.take(jnp.asarray(labels), jnp.clip(index, 0, max(len(labels) - 1, 0)))
    if literal is not None:
        values = jnp.where(literal, index.astype(jnp.int64), values)
    return values


def as_rows(x):
    """Feature input as [N, F] float (rank 1 is one row), as ORT's ml kernels read it."""
    x = jnp.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    elif x.ndim > 2:
        x = x.reshape(x.shape[0], -1)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x


def floats(n, name: str, default=None, dtype=np.float32) -> np.ndarray | None:
    """A float-list attribute or its ``*_as_tensor`` form."""
    tensor = n.attr(name + "_as_tensor")
    if tensor is not None:
        return np.asarray(tensor)
    value = n.attr(name)
    if value is None:
        return None if default is None else np.asarray(default, dtype=dtype)
    return np.asarray(value, dtype=dtype)


__all__ = ["ML", "apply_post_transform", "as_rows", "class_labels", "floats", "label_output", "logistic",
           "post_transform_name", "probit", "softmax", "softmax_zero"]
