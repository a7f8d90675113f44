"""Normalizations: LayerNormalization, RMSNormalization, BatchNormalization, Instance/Group, Lp, MVN, LRN."""

from __future__ import annotations

from jax import lax

from . import op
from ._common import jnp, norm_axis, np, upcast


def _stat_dtype(n, x):
    stash = n.attr("stash_type", 1)
    return jnp.float32 if stash == 1 and x.dtype != jnp.float64 else x.dtype


@op("LayerNormalization")
def layer_norm(n, x, scale, bias=None):
    axis = norm_axis(n.attr("axis", -1), x.ndim)
    eps = n.attr("epsilon", 1e-5)
    axes = tuple(range(axis, x.ndim))
    dtype = x.dtype
    y = jnp.asarray(x).astype(_stat_dtype(n, x))
    mean = jnp.mean(y, axis=axes, keepdims=True)
    centered = y - mean
    var = jnp.mean(centered * centered, axis=axes, keepdims=True)
    inv = lax.rsqrt(var + jnp.asarray(eps, y.dtype))
    normed = (centered * inv).astype(dtype)
    out = normed * scale
    if bias is not None:
        out = out + bias
    outs = [out.astype(dtype)]
    if n.output_used(1):
        outs.append(mean)
    if n.output_used(2):
        outs.append(inv)
    return tuple(outs) if len(outs) > 1 else outs[0]


@op("RMSNormalization")
def rms_norm(n, x, scale):
    axis = norm_axis(n.attr("axis", -1), x.ndim)
    eps = n.attr("epsilon", 1e-5)
    axes = tuple(range(axis, x.ndim))
    dtype = x.dtype
    y = jnp.asarray(x).astype(_stat_dtype(n, x))
    inv = lax.rsqrt(jnp.mean(y * y, axis=axes, keepdims=True) + jnp.asarray(eps, y.dtype))
    return ((y * inv).astype(dtype) * scale).astype(dtype)


def _channel(v, rank):
    return jnp.reshape(v, (1, -1) + (1,) * (rank - 2))


@op("BatchNormalization")
def batch_norm(n, x, scale, bias, mean, var):
    eps = n.attr("epsilon", 1e-5)
    if n.attr("training_mode", 0):
        axes = (0,) + tuple(range(2, x.ndim))
        y, dtype = upcast(jnp.asarray(x))
        bmean = jnp.mean(y, axis=axes)
        bvar = jnp.var(y, axis=axes)
        out = (y - _channel(bmean, x.ndim)) * lax.rsqrt(_channel(bvar, x.ndim) + eps) * _channel(scale, x.ndim) \
            + _channel(bias, x.ndim)
        momentum = n.attr("momentum", 0.9)
        running_mean = mean * momentum + bmean * (1 - momentum)
        running_var = var * momentum + bvar * (1 - momentum)
        return out.astype(dtype), running_mean.astype(mean.dtype), running_var.astype(var.dtype)
    inv = lax.rsqrt(jnp.asarray(var) + jnp.asarray(eps, var.dtype))
    mul = scale * inv
    add = bias - mean * mul
    return (x * _channel(mul, x.ndim) + _channel(add, x.ndim)).astype(x.dtype)


@op("InstanceNormalization")
def instance_norm(n, x, scale, bias):
    eps = n.attr("epsilon", 1e-5)
    axes = tuple(range(2, x.ndim))
    y, dtype = upcast(jnp.asarray(x))
    mean = jnp.mean(y, axis=axes, keepdims=True)
    var = jnp.var(y, axis=axes, keepdims=True)
    out = (y - mean) * lax.rsqrt(var + eps) * _channel(scale, x.ndim) + _channel(bias, x.ndim)
    return out.astype(dtype)


@op("GroupNormalization")
def group_norm(n, x, scale, bias):
    eps = n.attr("epsilon", 1e-5)
    groups = n["num_groups"]
    N, C = x.shape[:2]
    y, dtype = upcast(jnp.asarray(x))
    g = jnp.reshape(y, (N, groups, -1))
    mean = jnp.mean(g, axis=-1, keepdims=True)
    var = jnp.var(g, axis=-1, keepdims=True)
    normed = jnp.reshape((g - mean) * lax.rsqrt(var + eps), x.shape)
    if n.opset >= 21:
        out = normed * _channel(scale, x.ndim) + _channel(bias, x.ndim)
    else:  # opset 18: scale and bias per group
        per = C // groups
        out = normed * _channel(jnp.repeat(scale, per), x.ndim) + _channel(jnp.repeat(bias, per), x.ndim)
    return out.astype(dtype)


@op("LpNormalization")
def lp_norm(n, x):
    axis = norm_axis(n.attr("axis", -1), x.ndim)
    p = n.attr("p", 2)
    if p == 1:
        norm = jnp.sum(jnp.abs(x), axis=axis, keepdims=True)
    else:
        norm = jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=True))
    return jnp.where(norm == 0, 0, x / jnp.where(norm == 0, 1, norm)).astype(x.dtype)


@op("MeanVarianceNormalization")
def mvn(n, x):
    axes = tuple(norm_axis(a, x.ndim) for a in n.attr("axes", [0, 2, 3]))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(x * x, axis=axes, keepdims=True) - mean * mean
    return ((x - mean) / (jnp.sqrt(var) + 1e-9)).astype(x.dtype)


@op("LRN")
def lrn(n, x):
    size = n["size"]
    alpha, beta, bias = n.attr("alpha", 1e-4), n.attr("beta", 0.75), n.attr("bias", 1.0)
    sq = jnp.asarray(x) * x
    lo = (size - 1) // 2
    hi = size - 1 - lo
    width = [(0, 0)] * x.ndim
    width[1] = (lo, hi)
    padded = jnp.pad(sq, width)
    window = [1] * x.ndim
    window[1] = size
    total = lax.reduce_window(padded, np.array(0, x.dtype), lax.add, tuple(window), (1,) * x.ndim, "VALID")
    return (x / (bias + alpha / size * total) ** beta).astype(x.dtype)
