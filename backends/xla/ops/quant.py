"""Quantization ops: QuantizeLinear, DequantizeLinear (per-tensor, per-axis, blocked; int8/uint8/int4/fp8),
DynamicQuantizeLinear, QLinearMatMul, QLinearConv. The compile-time fusions that keep constant quantized
weights int8/int4 on the device (QMatMul, QGather) live in ``backends/xla/quant/``."""

from __future__ import annotations

import ml_dtypes

from . import op
from ._common import jnp, norm_axis, np

def _range(dtype):
    dtype = np.dtype(dtype)
    if dtype.name in ("int4", "uint4", "int2", "uint2"):
        info = ml_dtypes.iinfo(dtype)
        return int(info.min), int(info.max)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return int(info.min), int(info.max)
    return None


def _expand(param, x, axis, block_size):
    """Scale/zero-point broadcast to x: scalar, per-axis 1-D, or blocked along ``axis``."""
    if param.ndim == 0 or param.size == 1 and param.ndim <= 1 and not block_size:
        return param.reshape(())
    axis = norm_axis(axis, x.ndim)
    if block_size:
        return jnp.repeat(param, block_size, axis=axis, total_repeat_length=x.shape[axis])
    shape = [1] * x.ndim
    shape[axis] = -1
    return param.reshape(shape)


@op("DequantizeLinear")
def dequantize_linear(n, x, scale, zero=None):
    axis = n.attr("axis", 1)
    block = n.attr("block_size", 0)
    x = jnp.asarray(x)
    scale = jnp.asarray(scale)
    out_dtype = scale.dtype
    if n.attr("output_dtype"):
        from ._common import onnx_dtype

        out_dtype = onnx_dtype(n["output_dtype"])
    s = _expand(scale, x, axis, block)
    values = x.astype(jnp.float32)
    if zero is not None:
        values = values - _expand(jnp.asarray(zero), x, axis, block).astype(jnp.float32)
    return (values * s.astype(jnp.float32)).astype(out_dtype)


@op("QuantizeLinear")
def quantize_linear(n, x, scale, zero=None):
    from ._common import onnx_dtype

    axis = n.attr("axis", 1)
    block = n.attr("block_size", 0)
    x = jnp.asarray(x)
    if zero is not None:
        target = np.dtype(zero.dtype)
    elif n.attr("output_dtype"):
        target = onnx_dtype(n["output_dtype"])
    else:
        target = np.dtype(np.uint8)
    s = _expand(jnp.asarray(scale), x, axis, block).astype(jnp.float32)
    y = x.astype(jnp.float32) / s
    bounds = _range(target)
    if bounds is not None:
        y = jnp.round(y)
        if zero is not None:
            y = y + _expand(jnp.asarray(zero), x, axis, block).astype(jnp.float32)
        y = jnp.clip(y, *bounds)
        return y.astype(target)
    # float8 targets: saturate to the finite range, then round to nearest even by the cast
    if zero is not None:
        y = y + _expand(jnp.asarray(zero), x, axis, block).astype(jnp.float32)
    if n.attr("saturate", 1):
        limit = float(ml_dtypes.finfo(target).max)
        y = jnp.where(jnp.isnan(y), y, jnp.clip(y, -limit, limit))
    return y.astype(target)


@op("DynamicQuantizeLinear")
def dynamic_quantize_linear(n, x):
    x = jnp.asarray(x).astype(jnp.float32)
    lo = jnp.minimum(jnp.min(x), 0.0)
    hi = jnp.maximum(jnp.max(x), 0.0)
    scale = (hi - lo) / 255.0
    zero = jnp.clip(jnp.round(0 - lo / scale), 0, 255)
    y = jnp.clip(jnp.round(x / scale) + zero, 0, 255).astype(jnp.uint8)
    return y, scale.astype(jnp.float32), zero.astype(jnp.uint8)


def _deq(x, scale, zero, axis_for_vector):
    x = jnp.asarray(x).astype(jnp.float32)
    scale = jnp.asarray(scale).astype(jnp.float32)
    zero = jnp.asarray(zero).astype(jnp.float32)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * x.ndim
        shape[axis_for_vector] = -1
        scale = scale.reshape(shape)
        zero = zero.reshape(shape) if zero.ndim == 1 and zero.size > 1 else zero.reshape(-1)[0]
    return (x - zero) * scale


def _requant(y, scale, zero):
    zero = jnp.asarray(zero)
    q = jnp.round(y / jnp.asarray(scale).astype(jnp.float32)) + zero.astype(jnp.float32)
    lo, hi = _range(zero.dtype)
    return jnp.clip(q, lo, hi).astype(zero.dtype)


@op("QLinearMatMul")
def qlinear_matmul(n, a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero):
    af = _deq(a, a_scale, a_zero, axis_for_vector=-2 if jnp.asarray(a).ndim >= 2 else 0)
    bf = _deq(b, b_scale, b_zero, axis_for_vector=-1)
    return _requant(jnp.matmul(af, bf), y_scale, y_zero)


@op("QLinearConv")
def qlinear_conv(n, x, x_scale, x_zero, w, w_scale, w_zero, y_scale, y_zero, bias=None):
    from .conv import conv

    xf = _deq(x, x_scale, x_zero, 1)
    wf = _deq(w, w_scale, w_zero, 0)
    y = conv(n, xf, wf)
    if bias is not None:
        b = jnp.asarray(bias).astype(jnp.float32) * (jnp.asarray(x_scale).astype(jnp.float32) *
                                                      jnp.asarray(w_scale).astype(jnp.float32))
        y = y + b.reshape((1, -1) + (1,) * (y.ndim - 2))
    return _requant(y, y_scale, y_zero)
