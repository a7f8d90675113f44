"""Softmax family, Hardmax, Dropout (inference), SwiGLU."""

from __future__ import annotations

import math

import jax

from . import op
from ..jaxenv import is_tracer
from ._common import jnp, norm_axis, np, upcast


def _coerced(n, x, fn):
    """Opset < 13: the op works on x flattened to 2-D at ``axis`` (default 1)."""
    axis = norm_axis(n.attr("axis", 1), x.ndim)
    shape = x.shape
    flat = jnp.reshape(x, (math.prod(shape[:axis]), math.prod(shape[axis:])))
    return jnp.reshape(fn(flat, -1), shape)


def _softmax(x, axis):
    y, dtype = upcast(jnp.asarray(x))
    return jax.nn.softmax(y, axis=axis).astype(dtype)


def _log_softmax(x, axis):
    y, dtype = upcast(jnp.asarray(x))
    return jax.nn.log_softmax(y, axis=axis).astype(dtype)


def _hardmax(x, axis):
    idx = jnp.argmax(x, axis=axis)
    return jax.nn.one_hot(idx, x.shape[axis], axis=axis, dtype=x.dtype)


for _name, _fn in [("Softmax", _softmax), ("LogSoftmax", _log_softmax), ("Hardmax", _hardmax)]:
    def _old(n, x, fn=_fn):
        return _coerced(n, x, fn)

    def _new(n, x, fn=_fn):
        return fn(x, norm_axis(n.attr("axis", -1), x.ndim))

    op(_name, since=1)(_old)
    op(_name, since=13)(_new)


@op("Dropout", fold=False)
def dropout(n, x, ratio=None, training_mode=None):
    if is_tracer(training_mode):
        from ._common import DynamicShape

        # the mask's randomness is decided per call: run this signature op by op
        raise DynamicShape("Dropout with a training_mode computed from the inputs")
    training = training_mode is not None and bool(np.asarray(training_mode))
    if not training or (ratio is not None and float(np.asarray(ratio)) == 0.0):
        mask = jnp.ones(x.shape, bool)
        return (x, mask) if n.n_outputs > 1 else x
    p = float(np.asarray(ratio)) if ratio is not None else 0.5
    seed = n.attr("seed")
    keep = jax.random.bernoulli(n.ctx.next_key(seed), 1.0 - p, x.shape)
    y = jnp.where(keep, x / (1.0 - p), 0).astype(x.dtype)
    return (y, keep) if n.n_outputs > 1 else y


@op("SwiGLU")
def swiglu(n, a, b=None):
    if b is None:
        a, b = jnp.split(a, 2, axis=-1)
    alpha = n.attr("alpha", 1.0)
    return (a * jax.nn.sigmoid(alpha * a) * b).astype(a.dtype)
