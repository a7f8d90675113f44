"""Pooling: MaxPool, AveragePool, LpPool, and the global forms (lax.reduce_window)."""

from __future__ import annotations

import math

from jax import lax

from . import op
from ._common import jnp, np, upcast
from .conv import spatial_pads


def _window(n, x):
    rank = x.ndim - 2
    kernel = list(n["kernel_shape"])
    strides = n.attr("strides") or [1] * rank
    dilations = n.attr("dilations") or [1] * rank
    pads = spatial_pads(n, x.shape[2:], kernel, strides, dilations)
    extra = []
    for i, size in enumerate(x.shape[2:]):
        pb, pe = pads[i]
        span = (kernel[i] - 1) * dilations[i] + 1
        full = size + pb + pe - span
        if n.attr("ceil_mode", 0):
            out = -(-full // strides[i]) + 1
            if (out - 1) * strides[i] >= size + pb:
                out -= 1
        else:
            out = full // strides[i] + 1
        extra.append(max((out - 1) * strides[i] + span - (size + pb + pe), 0))
    return kernel, strides, dilations, pads, extra


def _reduce(x, init, fn, kernel, strides, dilations, padding):
    return lax.reduce_window(x, init, fn, (1, 1) + tuple(kernel), (1, 1) + tuple(strides),
                             ((0, 0), (0, 0)) + tuple(padding), window_dilation=(1, 1) + tuple(dilations))


@op("MaxPool")
def max_pool(n, x):
    x = jnp.asarray(x)
    kernel, strides, dilations, pads, extra = _window(n, x)
    padding = [(pb, pe + e) for (pb, pe), e in zip(pads, extra)]
    low = -jnp.inf if jnp.issubdtype(x.dtype, jnp.floating) else jnp.iinfo(x.dtype).min
    if not n.output_used(1):
        return _reduce(x, np.array(low, x.dtype), lax.max, kernel, strides, dilations, padding)
    # Indices: reduce (value, flat index) pairs; ties keep the first index
    shape = x.shape
    if n.attr("storage_order", 0) and x.ndim == 4:
        N, C, H, W = shape
        index = (np.arange(N * C)[:, None, None] * H * W + np.arange(W)[None, None, :] * H
                 + np.arange(H)[None, :, None]).reshape(shape)
    else:
        index = np.arange(int(np.prod(shape))).reshape(shape)
    big = np.iinfo(np.int64).max

    def pick(a, b):
        (av, ai), (bv, bi) = a, b
        take_b = (bv > av) | ((bv == av) & (bi < ai))
        return jnp.where(take_b, bv, av), jnp.where(take_b, bi, ai)

    values, indices = lax.reduce_window(
        (x, jnp.asarray(index, jnp.int64)), (np.array(low, x.dtype), np.array(big, np.int64)), pick,
        (1, 1) + tuple(kernel), (1, 1) + tuple(strides), ((0, 0), (0, 0)) + tuple(padding),
        window_dilation=(1, 1) + tuple(dilations))
    return values, indices


@op("AveragePool")
def average_pool(n, x):
    x = jnp.asarray(x)
    kernel, strides, dilations, pads, extra = _window(n, x)
    padding = [(pb, pe + e) for (pb, pe), e in zip(pads, extra)]
    y, dtype = upcast(x)
    total = _reduce(y, np.array(0, y.dtype), lax.add, kernel, strides, dilations, padding)
    if n.attr("count_include_pad", 0):
        ones = jnp.pad(jnp.ones(x.shape[2:], y.dtype), pads, constant_values=1)
        count_pad = [(0, e) for e in extra]
    else:
        ones = jnp.ones(x.shape[2:], y.dtype)
        count_pad = [(pb, pe + e) for (pb, pe), e in zip(pads, extra)]
    counts = lax.reduce_window(ones, np.array(0, y.dtype), lax.add, tuple(kernel), tuple(strides),
                               tuple(count_pad), window_dilation=tuple(dilations))
    return (total / counts).astype(dtype)


@op("LpPool")
def lp_pool(n, x):
    x = jnp.asarray(x)
    p = n.attr("p", 2)
    kernel, strides, dilations, pads, extra = _window(n, x)
    padding = [(pb, pe + e) for (pb, pe), e in zip(pads, extra)]
    total = _reduce(jnp.abs(x) ** p, np.array(0, x.dtype), lax.add, kernel, strides, dilations, padding)
    return (total ** (1.0 / p)).astype(x.dtype)


def _spatial(x):
    return tuple(range(2, x.ndim))


@op("GlobalAveragePool")
def global_average_pool(n, x):
    y, dtype = upcast(jnp.asarray(x))
    return jnp.mean(y, axis=_spatial(x), keepdims=True).astype(dtype)


@op("GlobalMaxPool")
def global_max_pool(n, x):
    return jnp.max(x, axis=_spatial(x), keepdims=True)


@op("GlobalLpPool")
def global_lp_pool(n, x):
    p = n.attr("p", 2)
    return (jnp.sum(jnp.abs(x) ** p, axis=_spatial(x), keepdims=True) ** (1.0 / p)).astype(x.dtype)


@op("MaxUnpool")
def max_unpool(n, x, indices, output_shape=None):
    from ._common import static_ints

    if output_shape is not None:
        shape = static_ints(output_shape, "MaxUnpool output_shape")
    else:
        rank = x.ndim - 2
        kernel = n["kernel_shape"]
        strides = n.attr("strides") or [1] * rank
        pads = n.attr("pads") or [0] * (2 * rank)
        shape = list(x.shape[:2]) + [(x.shape[2 + i] - 1) * strides[i] + kernel[i] - pads[i] - pads[i + rank]
                                     for i in range(rank)]
    flat = jnp.zeros(math.prod(shape), x.dtype)
    flat = flat.at[jnp.reshape(indices, (-1,))].set(jnp.reshape(x, (-1,)))
    return jnp.reshape(flat, shape)
