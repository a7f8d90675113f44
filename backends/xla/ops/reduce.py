"""Reductions and ArgMax/ArgMin."""

from __future__ import annotations

from . import op
from ._common import jnp, norm_axis, np, static_ints, upcast, xp

# opset where each reduction's axes moved from an attribute to an input
_AXES_INPUT_SINCE = {"ReduceSum": 13}


def _axes(n, x, axes_input):
    if n.opset >= _AXES_INPUT_SINCE.get(n.node.op_type, 18):
        axes = static_ints(axes_input, f"{n.node.op_type} axes") if axes_input is not None else []
    else:
        axes = list(n.attr("axes", []) or [])
    if not axes:
        if n.attr("noop_with_empty_axes", 0):
            return None
        return tuple(range(x.ndim))
    return tuple(sorted(norm_axis(a, x.ndim) for a in axes))


def _reduction(fn):
    def lowered(n, x, axes_input=None):
        axes = _axes(n, x, axes_input)
        if axes is None:
            return fn(xp(x), x, None, True, identity=True)
        return fn(xp(x), x, axes, bool(n.attr("keepdims", 1)))

    return lowered


def _acc(m, x):
    if m is jnp:
        return upcast(x)
    return x, x.dtype


def _sum(m, x, axes, keep, identity=False):
    if identity:
        return x
    y, dtype = _acc(m, x)
    return m.sum(y, axis=axes, keepdims=keep).astype(dtype)


def _mean(m, x, axes, keep, identity=False):
    if identity:
        return x
    y, dtype = _acc(m, x)
    return m.mean(y, axis=axes, keepdims=keep).astype(dtype)


def _empty_extreme(m, x, axes, keep, lowest: bool):
    """Max (lowest=True) / Min over an empty axis: ONNX's identity, -inf/+inf or the int range end."""
    shape = [1 if a in axes else d for a, d in enumerate(x.shape)] if keep else \
        [d for a, d in enumerate(x.shape) if a not in axes]
    if np.issubdtype(x.dtype, np.floating):
        fill = -np.inf if lowest else np.inf
    else:
        fill = np.iinfo(x.dtype).min if lowest else np.iinfo(x.dtype).max
    return m.full(shape, fill, x.dtype)


def _max(m, x, axes, keep, identity=False):
    if identity:
        return x
    if x.size == 0 or any(x.shape[a] == 0 for a in axes):
        return _empty_extreme(m, x, axes, keep, lowest=True)
    return m.max(x, axis=axes, keepdims=keep)


def _min(m, x, axes, keep, identity=False):
    if identity:
        return x
    if x.size == 0 or any(x.shape[a] == 0 for a in axes):
        return _empty_extreme(m, x, axes, keep, lowest=False)
    return m.min(x, axis=axes, keepdims=keep)


def _prod(m, x, axes, keep, identity=False):
    if identity:
        return x
    return m.prod(x, axis=axes, keepdims=keep).astype(x.dtype)


def _l1(m, x, axes, keep, identity=False):
    if identity:
        return m.abs(x)
    return m.sum(m.abs(x), axis=axes, keepdims=keep).astype(x.dtype)


def _l2(m, x, axes, keep, identity=False):
    if identity:
        return m.abs(x)
    y, dtype = _acc(m, x)
    return m.sqrt(m.sum(y * y, axis=axes, keepdims=keep)).astype(dtype)


def _sum_square(m, x, axes, keep, identity=False):
    if identity:
        return x * x
    return m.sum(x * x, axis=axes, keepdims=keep).astype(x.dtype)


def _log_sum(m, x, axes, keep, identity=False):
    if identity:
        return m.log(x)
    return m.log(m.sum(x, axis=axes, keepdims=keep)).astype(x.dtype)


def _log_sum_exp(m, x, axes, keep, identity=False):
    if identity:
        return x
    y, dtype = _acc(m, x)
    if y.size == 0 or any(y.shape[a] == 0 for a in axes):
        return m.log(m.sum(m.exp(y), axis=axes, keepdims=keep)).astype(dtype)
    hi = m.max(y, axis=axes, keepdims=True)
    hi = m.where(m.isfinite(hi), hi, 0)
    out = m.log(m.sum(m.exp(y - hi), axis=axes, keepdims=True)) + hi
    if not keep:
        out = m.squeeze(out, axis=axes)
    return out.astype(dtype)


for _name, _fn in [("ReduceSum", _sum), ("ReduceMean", _mean), ("ReduceMax", _max), ("ReduceMin", _min),
                   ("ReduceProd", _prod), ("ReduceL1", _l1), ("ReduceL2", _l2),
                   ("ReduceSumSquare", _sum_square), ("ReduceLogSum", _log_sum),
                   ("ReduceLogSumExp", _log_sum_exp)]:
    op(_name)(_reduction(_fn))


def _arg(fn_name):
    def lowered(n, x):
        axis = norm_axis(n.attr("axis", 0), x.ndim)
        keep = bool(n.attr("keepdims", 1))
        m = xp(x)
        if n.attr("select_last_index", 0):
            flipped = m.flip(x, axis)
            idx = x.shape[axis] - 1 - getattr(m, fn_name)(flipped, axis=axis)
        else:
            idx = getattr(m, fn_name)(x, axis=axis)
        if keep:
            idx = m.expand_dims(idx, axis)
        return idx.astype(np.int64)

    return lowered


op("ArgMax")(_arg("argmax"))
op("ArgMin")(_arg("argmin"))
