"""Random numbers, BitCast, window functions, Upsample."""

from __future__ import annotations

import jax
from jax import lax

from . import op
from ._common import Unsupported, concrete, jnp, np, onnx_dtype, static_ints


def _dtype(n, default):
    value = n.attr("dtype")
    return onnx_dtype(value) if value is not None else default


@op("RandomNormal", fold=False)
def random_normal(n):
    shape = list(n["shape"])
    dtype = _dtype(n, np.float32)
    z = jax.random.normal(n.ctx.next_key(n.attr("seed")), shape, jnp.float32)
    return (z * n.attr("scale", 1.0) + n.attr("mean", 0.0)).astype(dtype)


@op("RandomUniform", fold=False)
def random_uniform(n):
    shape = list(n["shape"])
    dtype = _dtype(n, np.float32)
    u = jax.random.uniform(n.ctx.next_key(n.attr("seed")), shape, jnp.float32, n.attr("low", 0.0),
                           n.attr("high", 1.0))
    return u.astype(dtype)


@op("RandomNormalLike", fold=False)
def random_normal_like(n, x):
    z = jax.random.normal(n.ctx.next_key(n.attr("seed")), x.shape, jnp.float32)
    return (z * n.attr("scale", 1.0) + n.attr("mean", 0.0)).astype(_dtype(n, x.dtype))


@op("RandomUniformLike", fold=False)
def random_uniform_like(n, x):
    u = jax.random.uniform(n.ctx.next_key(n.attr("seed")), x.shape, jnp.float32, n.attr("low", 0.0),
                           n.attr("high", 1.0))
    return u.astype(_dtype(n, x.dtype))


@op("Bernoulli", fold=False)
def bernoulli(n, x):
    draw = jax.random.uniform(n.ctx.next_key(n.attr("seed")), x.shape, jnp.float32)
    return (draw < x).astype(_dtype(n, x.dtype))


@op("BitCast")
def bitcast(n, x):
    target = onnx_dtype(n["to"])
    x = jnp.asarray(x)
    src = np.dtype(x.dtype)
    if target.itemsize == src.itemsize:
        return lax.bitcast_convert_type(x, target)
    if target.itemsize < src.itemsize:  # one source element -> several target elements (last axis)
        ratio = src.itemsize // target.itemsize
        y = lax.bitcast_convert_type(x, target)  # adds a trailing axis of size ratio
        return y.reshape(x.shape[:-1] + (x.shape[-1] * ratio,)) if x.ndim else y
    ratio = target.itemsize // src.itemsize
    return lax.bitcast_convert_type(x.reshape(x.shape[:-1] + (x.shape[-1] // ratio, ratio)), target)


def _window(n, size, fn):
    length = int(static_ints(size, f"{n.node.op_type} size")[0])
    periodic = n.attr("periodic", 1)
    denominator = length if periodic else length - 1
    k = np.arange(length, dtype=np.float64)
    values = fn(2 * np.pi * k / max(denominator, 1))
    return values.astype(onnx_dtype(n.attr("output_datatype", 1)))


@op("HannWindow")
def hann_window(n, size):
    return _window(n, size, lambda a: 0.5 - 0.5 * np.cos(a))


@op("HammingWindow")
def hamming_window(n, size):
    return _window(n, size, lambda a: 25 / 46 - (1 - 25 / 46) * np.cos(a))


@op("BlackmanWindow")
def blackman_window(n, size):
    return _window(n, size, lambda a: 0.42 - 0.5 * np.cos(a) + 0.08 * np.cos(2 * a))


@op("Upsample", since=7)
def upsample(n, x, scales=None):
    scales = n.attr("scales") if scales is None else [float(v) for v in concrete(scales, "Upsample scales").reshape(-1)]
    if n.attr("mode", "nearest") != "nearest":
        raise Unsupported("Upsample with linear mode (use Resize)")
    y = jnp.asarray(x)
    for axis, scale in enumerate(scales):
        out = int(np.floor(x.shape[axis] * scale))
        if out != x.shape[axis]:
            index = np.minimum((np.arange(out) / scale).astype(np.int64), x.shape[axis] - 1)
            y = jnp.take(y, index, axis=axis)
    return y
