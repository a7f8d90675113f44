"""ONNX Runtime's QOperator-format contrib ops (``com.microsoft`` QGemm, QLinearAdd, QLinearMul, ...).

``onnxruntime.quantization.quantize_static(..., quant_format=QuantFormat.QOperator)`` writes them
(int8 model-zoo files carry them too). Each follows ORT's CPU kernel (MLAS): integer accumulation
where ORT accumulates in integers, float ratios of scales, ``nearbyint`` (half to even) and a
clamp to the output type.
"""

from __future__ import annotations

from . import op
from jax import lax

from ._common import Unsupported, is_const, jax, jnp, np

MS = "com.microsoft"


def _zero(zp):
    return jnp.zeros((), jnp.int32) if zp is None else jnp.asarray(zp).astype(jnp.int32).reshape(-1)[0]


def _out_type(zp, fallback):
    return jnp.asarray(zp).dtype if zp is not None else fallback


def _clamp_cast(v, dtype):
    info = jnp.iinfo(dtype)
    return jnp.clip(v, info.min, info.max).astype(dtype)


def _quantize(v, scale, zp, dtype):
    """MlasQuantizeLinear: round(v / scale) + zero point, clamped.

    A true elementwise division, as MLAS does: XLA turns a division by a broadcast scalar into a
    multiplication by its reciprocal (one ulp off, which flips ties), so the divisor is broadcast
    behind an optimization barrier.
    """
    v = jnp.asarray(v)
    divisor = lax.optimization_barrier(jnp.broadcast_to(jnp.asarray(scale).astype(jnp.float32).reshape(()), v.shape))
    q = jnp.round(v / divisor) + _zero(zp).astype(jnp.float32)
    return _clamp_cast(q, dtype)


def _host_table(fn, x_dtype, x_scale, x_zero, y_scale, y_zero, y_dtype):
    """ORT's QlinearBuildLookupTable, on the host in float32: table[x] = quantize(fn(dequantize(x)))."""
    values = np.arange(256).astype(np.uint8).view(x_dtype).astype(np.int32)
    zero_x = int(np.asarray(x_zero).reshape(-1)[0]) if x_zero is not None else 0
    dequantized = np.float32(np.asarray(x_scale, np.float32).reshape(-1)[0]) * (values - zero_x).astype(np.float32)
    out = np.asarray(fn(dequantized), np.float32)
    zero_y = int(np.asarray(y_zero).reshape(-1)[0]) if y_zero is not None else 0
    q = np.round(out / np.float32(np.asarray(y_scale, np.float32).reshape(-1)[0])) + zero_y
    info = np.iinfo(y_dtype)
    return np.clip(q, info.min, info.max).astype(y_dtype)


def _lookup(x, table):
    """Apply a 256-entry table to uint8/int8 codes (int8 indexes by its byte)."""
    x = jnp.asarray(x)
    index = x.astype(jnp.int32) if x.dtype == jnp.uint8 else (x.astype(jnp.int32) & 0xFF)
    return jnp.take(jnp.asarray(table), index)


def _dequantize(x, scale, zp):
    return (jnp.asarray(x).astype(jnp.int32) - _zero(zp)).astype(jnp.float32) * \
        jnp.asarray(scale).astype(jnp.float32).reshape(())


def _scalar(v):
    """A scale as float32: numpy when known while lowering, so ratios of scales are computed in float32
    on the host exactly as ORT computes them (not rewritten by XLA)."""
    if is_const(v):
        return np.float32(np.asarray(v, np.float32).reshape(-1)[0])
    return jnp.asarray(v).astype(jnp.float32).reshape(())


def _vector(v):
    if is_const(v):
        return np.asarray(v, np.float32).reshape(-1)
    return jnp.asarray(v).astype(jnp.float32).reshape(-1)


@op("QLinearAdd", domain=MS)
def qlinear_add(n, a, a_scale, a_zero, b, b_scale, b_zero, c_scale, c_zero=None):
    ratio_a = _scalar(a_scale) / _scalar(c_scale)
    ratio_b = _scalar(b_scale) / _scalar(c_scale)
    value = (jnp.asarray(a).astype(jnp.int32) - _zero(a_zero)).astype(jnp.float32) * ratio_a + \
        (jnp.asarray(b).astype(jnp.int32) - _zero(b_zero)).astype(jnp.float32) * ratio_b
    return _clamp_cast(jnp.round(value) + _zero(c_zero).astype(jnp.float32), _out_type(c_zero, jnp.asarray(a).dtype))


@op("QLinearMul", domain=MS)
def qlinear_mul(n, a, a_scale, a_zero, b, b_scale, b_zero, c_scale, c_zero=None):
    multiplier = _scalar(a_scale) * _scalar(b_scale) / _scalar(c_scale)
    value = (jnp.asarray(a).astype(jnp.int32) - _zero(a_zero)).astype(jnp.float32) * \
        (jnp.asarray(b).astype(jnp.int32) - _zero(b_zero)).astype(jnp.float32) * multiplier
    return _clamp_cast(jnp.round(value) + _zero(c_zero).astype(jnp.float32), _out_type(c_zero, jnp.asarray(a).dtype))


def _table_op(fn_np, fn_jnp):
    # ORT evaluates these through a 256-entry table built in float: quantize(fn(dequantize(x)))
    def lower(n, x, x_scale, x_zero=None, y_scale=None, y_zero=None):
        x = jnp.asarray(x)
        out_dtype = _out_type(y_zero, x.dtype)
        if all(v is None or is_const(v) for v in (x_scale, x_zero, y_scale, y_zero)):
            return _lookup(x, _host_table(lambda v: fn_np(n, v), np.dtype(x.dtype), x_scale, x_zero, y_scale,
                                          y_zero, np.dtype(out_dtype)))
        return _quantize(fn_jnp(n, _dequantize(x, x_scale, x_zero)), y_scale, y_zero, out_dtype)

    return lower


def _sigmoid_np(n, v):
    return (1 / (1 + np.exp(-v.astype(np.float64)))).astype(np.float32)


def _leaky_np(n, v):
    return np.where(v >= 0, v, np.float32(n.attr("alpha", 0.01)) * v).astype(np.float32)


_sigmoid_table = _table_op(_sigmoid_np, lambda n, v: jax.nn.sigmoid(v))
_leaky_table = _table_op(_leaky_np, lambda n, v: jnp.where(v >= 0, v, v * np.float32(n.attr("alpha", 0.01))))


@op("QLinearSigmoid", domain=MS)
def qlinear_sigmoid(n, x, x_scale, x_zero=None, y_scale=None, y_zero=None):
    return _sigmoid_table(n, x, x_scale, x_zero, y_scale, y_zero)


@op("QLinearLeakyRelu", domain=MS)
def qlinear_leaky_relu(n, x, x_scale, x_zero=None, y_scale=None, y_zero=None):
    return _leaky_table(n, x, x_scale, x_zero, y_scale, y_zero)


@op("QLinearSoftmax", domain=MS)
def qlinear_softmax(n, x, x_scale, x_zero, y_scale, y_zero=None):
    """ORT's lookup-table softmax: exp table shifted so the row maximum reads entry 255."""
    x = jnp.asarray(x)
    if x.dtype != jnp.uint8:
        raise Unsupported("QLinearSoftmax on int8 input")
    opset = int(n.attr("opset", 13))
    axis = int(n.attr("axis", -1 if opset >= 13 else 1))
    axis = axis + x.ndim if axis < 0 else axis
    if opset < 13:
        moved = x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)
    else:
        moved = jnp.moveaxis(x, axis, -1)
    width = moved.shape[-1]
    scale = float(np.asarray(x_scale).reshape(-1)[0]) if not isinstance(x_scale, jax.Array) else None
    if scale is None:
        raise Unsupported("QLinearSoftmax with an X_scale computed at run time")
    shift = max(0.0, np.log(np.finfo(np.float32).max / width) - 5) / scale
    table = np.exp((np.arange(256, dtype=np.float64) - 255 + shift) * scale).astype(np.float32)
    ints = moved.astype(jnp.int32)
    index = ints + (255 - jnp.max(ints, axis=-1, keepdims=True))
    exp = jnp.take(jnp.asarray(table), index)
    total = jnp.sum(exp, axis=-1, keepdims=True)
    out_scale = np.float32(np.floor(1.0 / float(np.asarray(y_scale).reshape(-1)[0])))
    q = jnp.round((exp * out_scale) / total) + _zero(y_zero).astype(jnp.float32)
    y = jnp.minimum(q, 255).astype(jnp.uint8)
    if opset < 13:
        return y.reshape(x.shape)
    return jnp.moveaxis(y, -1, axis)


@op("QLinearGlobalAveragePool", domain=MS)
def qlinear_global_average_pool(n, x, x_scale, x_zero, y_scale, y_zero):
    x = jnp.asarray(x)
    channels_last = bool(n.attr("channels_last", 0))
    axes = tuple(range(1, x.ndim - 1)) if channels_last else tuple(range(2, x.ndim))
    size = int(np.prod([x.shape[a] for a in axes]))
    total = jnp.sum(x.astype(jnp.int32) - _zero(x_zero), axis=axes, keepdims=True)
    scale = _scalar(x_scale) / (_scalar(y_scale) * np.float32(size))
    q = jnp.round(total.astype(jnp.float32) * scale) + _zero(y_zero).astype(jnp.float32)
    return _clamp_cast(q, _out_type(y_zero, x.dtype))


@op("QLinearAveragePool", domain=MS)
def qlinear_average_pool(n, x, x_scale, x_zero, y_scale, y_zero=None):
    from .pool import average_pool

    if n.attr("channels_last", 0):
        raise Unsupported("QLinearAveragePool with channels_last")
    pooled = average_pool(n, _dequantize(x, x_scale, x_zero))
    return _quantize(pooled, y_scale, y_zero, _out_type(y_zero, jnp.asarray(x).dtype))


@op("QLinearConcat", domain=MS)
def qlinear_concat(n, y_scale, y_zero, *inputs):
    if len(inputs) % 3:
        raise Unsupported("QLinearConcat inputs must come in (tensor, scale, zero point) triples")
    out_dtype = _out_type(y_zero, jnp.asarray(inputs[0]).dtype)
    parts = []
    for x, scale, zero in zip(inputs[0::3], inputs[1::3], inputs[2::3]):
        x = jnp.asarray(x)
        if all(is_const(v) for v in (scale, zero, y_scale, y_zero)):  # ORT: a table per input
            parts.append(_lookup(x, _host_table(lambda v: v, np.dtype(x.dtype), scale, zero, y_scale, y_zero,
                                                np.dtype(out_dtype))))
        else:
            parts.append(_quantize(_dequantize(x, scale, zero), y_scale, y_zero, out_dtype))
    return jnp.concatenate(parts, axis=int(n["axis"]))


@op("QGemm", domain=MS)
def qgemm(n, a, a_scale, a_zero, b, b_scale, b_zero, c=None, y_scale=None, y_zero=None):
    qa = jnp.asarray(a).astype(jnp.int32) - _zero(a_zero)
    qb = jnp.asarray(b).astype(jnp.int32)
    if n.attr("transA", 0):
        qa = qa.T
    if n.attr("transB", 0):
        qb = qb.T
    bz = jnp.asarray(b_zero).astype(jnp.int32).reshape(-1)
    qb = qb - (bz if bz.size > 1 else bz[0])
    acc = jnp.matmul(qa, qb, preferred_element_type=jnp.int32)
    if c is not None:
        acc = acc + jnp.asarray(c).astype(jnp.int32)
    # ORT: alpha * a_scale * b_scale[i] (/ y_scale), in float32, before the GEMM
    scale = np.float32(n.attr("alpha", 1.0)) * _scalar(a_scale) * _vector(b_scale)
    if y_scale is None:
        return acc.astype(jnp.float32) * (scale if scale.size > 1 else scale[0])
    scale = scale / _scalar(y_scale)
    q = jnp.round(acc.astype(jnp.float32) * (scale if scale.size > 1 else scale[0])) + \
        _zero(y_zero).astype(jnp.float32)
    return _clamp_cast(q, _out_type(y_zero, jnp.uint8))


__all__ = ["MS"]
