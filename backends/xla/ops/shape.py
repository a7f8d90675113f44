"""Shape manipulation. Shapes of traced values are static, so Shape returns numpy and
chains of these ops over numpy values fold while tracing."""

from __future__ import annotations

import math

import ml_dtypes

from . import op
from ..narrowing import narrow_float
from ._common import Unsupported, float_compute, is_const, jnp, norm_axis, np, onnx_dtype, static_ints, xp


@op("Shape")
def shape(n, x):
    dims = list(x.shape)
    start, end = n.attr("start", 0), n.attr("end", None)
    rank = len(dims)
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = rank if end is None else min(max(end + rank if end < 0 else end, 0), rank)
    return np.asarray(dims[start:end], dtype=np.int64)


@op("Size")
def size(n, x):
    return np.asarray(math.prod(x.shape), dtype=np.int64)


@op("Reshape", since=1)
def reshape_v1(n, x):
    return _reshape(x, list(n.attr("shape")), allowzero=0)


@op("Reshape", since=5)
def reshape(n, x, shape_):
    return _reshape(x, static_ints(shape_, "Reshape shape"), allowzero=n.attr("allowzero", 0))


def _reshape(x, target: list[int], allowzero: int):
    if not allowzero:
        target = [x.shape[i] if d == 0 and i < x.ndim else d for i, d in enumerate(target)]
    return xp(x).reshape(x, target)


@op("Flatten")
def flatten(n, x):
    axis = norm_axis(n.attr("axis", 1), x.ndim)
    outer = math.prod(x.shape[:axis])
    return xp(x).reshape(x, (outer, math.prod(x.shape[axis:])))


def _axes_arg(n, axes_input, since):
    if n.opset >= since:
        return static_ints(axes_input, f"{n.node.op_type} axes") if axes_input is not None else None
    axes = n.attr("axes")
    return list(axes) if axes is not None else None


@op("Squeeze")
def squeeze(n, x, axes_input=None):
    axes = _axes_arg(n, axes_input, 13)
    m = xp(x)
    if axes is None:
        return m.reshape(x, [d for d in x.shape if d != 1])
    return m.squeeze(x, axis=tuple(norm_axis(a, x.ndim) for a in axes))


@op("Unsqueeze")
def unsqueeze(n, x, axes_input=None):
    axes = _axes_arg(n, axes_input, 13)
    rank = x.ndim + len(axes)
    axes = sorted(norm_axis(a, rank) for a in axes)
    shape_ = list(x.shape)
    for a in axes:
        shape_.insert(a, 1)
    return xp(x).reshape(x, shape_)


@op("Transpose")
def transpose(n, x):
    perm = n.attr("perm")
    return xp(x).transpose(x, perm if perm is not None else None)


@op("Expand")
def expand(n, x, shape_):
    target = np.broadcast_shapes(tuple(x.shape), tuple(static_ints(shape_, "Expand shape")))
    return xp(x).broadcast_to(x, target)


@op("Concat")
def concat(n, *xs):
    xs = [x for x in xs if x is not None]
    axis = norm_axis(n.attr("axis"), xs[0].ndim)
    return xp(*xs).concatenate(xs, axis=axis)


@op("Split")
def split(n, x, split_input=None):
    axis = norm_axis(n.attr("axis", 0), x.ndim)
    dim = x.shape[axis]
    if n.opset >= 13:
        sizes = static_ints(split_input, "Split sizes") if split_input is not None else None
    else:
        sizes = n.attr("split")
    if not sizes:
        parts = n.attr("num_outputs", n.n_outputs)
        chunk = -(-dim // parts)
        sizes = [min(chunk, dim - i * chunk) for i in range(parts)]
    offsets = np.cumsum([0] + list(sizes))
    index = [slice(None)] * x.ndim
    outs = []
    for start, stop in zip(offsets[:-1], offsets[1:]):
        index[axis] = slice(int(start), int(stop))
        outs.append(x[tuple(index)])
    return tuple(outs)


def slice_index(x_shape, starts, ends, axes, steps):
    index = [slice(None)] * len(x_shape)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = norm_axis(axis, len(x_shape))
        dim = x_shape[axis]
        if step == 0:
            raise Unsupported("Slice step 0")
        if start < 0:
            start += dim
        if end < 0:
            end += dim
        if step > 0:
            start, end = min(max(start, 0), dim), min(max(end, 0), dim)
            index[axis] = slice(start, end, step)
        else:
            start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
            index[axis] = slice(start, end if end >= 0 else None, step)
    return tuple(index)


@op("Slice", since=1)
def slice_v1(n, x):
    starts, ends = n.attr("starts"), n.attr("ends")
    axes = n.attr("axes") or list(range(len(starts)))
    return x[slice_index(x.shape, starts, ends, axes, [1] * len(starts))]


@op("Slice", since=10)
def slice_(n, x, starts, ends, axes=None, steps=None):
    starts = static_ints(starts, "Slice starts")
    ends = static_ints(ends, "Slice ends")
    axes = static_ints(axes, "Slice axes") if axes is not None else list(range(len(starts)))
    steps = static_ints(steps, "Slice steps") if steps is not None else [1] * len(starts)
    return x[slice_index(x.shape, starts, ends, axes, steps)]


@op("Tile")
def tile(n, x, repeats):
    return xp(x).tile(x, static_ints(repeats, "Tile repeats"))


@op("ConstantOfShape")
def constant_of_shape(n, shape_):
    value = n.attr("value")
    value = np.zeros(1, np.float32) if value is None else value
    dims = static_ints(shape_, "ConstantOfShape shape")
    dtype = np.dtype(float_compute(n, value.dtype))
    if dtype != value.dtype:
        value = narrow_float(value, dtype)
    if xp(shape_) is np and math.prod(dims) <= 1 << 16:
        return np.full(dims, value.reshape(-1)[0], dtype=value.dtype)
    return jnp.full(dims, value.reshape(-1)[0], dtype=dtype)


@op("Range")
def range_(n, start, limit, delta):
    from ._common import concrete

    s, l, d = (concrete(v, "Range bounds").reshape(()) for v in (start, limit, delta))
    count = max(int(np.ceil((l.item() - s.item()) / d.item())), 0)
    return (s + np.arange(count, dtype=s.dtype) * d).astype(s.dtype)


@op("Constant")
def constant(n):
    attrs = n.node.attrs
    if "value" in attrs:
        value = np.asarray(attrs["value"])
    elif "value_float" in attrs:
        value = np.asarray(attrs["value_float"], np.float32)
    elif "value_floats" in attrs:
        value = np.asarray(attrs["value_floats"], np.float32)
    elif "value_int" in attrs:
        value = np.asarray(attrs["value_int"], np.int64)
    elif "value_ints" in attrs:
        value = np.asarray(attrs["value_ints"], np.int64)
    elif "sparse_value" in attrs:
        from onnx import numpy_helper

        sparse = attrs["sparse_value"]
        dense = np.zeros(list(sparse.dims), numpy_helper.to_array(sparse.values).dtype)
        idx = numpy_helper.to_array(sparse.indices)
        vals = numpy_helper.to_array(sparse.values)
        if idx.ndim == 1:
            dense.reshape(-1)[idx] = vals
        else:
            dense[tuple(idx.T)] = vals
        value = dense
    else:
        raise Unsupported("Constant with string values")
    if value.dtype == object:
        raise Unsupported("Constant with string values")
    if n.ctx.compute_dtype is not None and value.dtype == np.float32:
        value = narrow_float(value, n.ctx.compute_dtype)
    return value


_SATURATING = {np.dtype(getattr(ml_dtypes, name)) for name in
               ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz")}


def cast_to(n, x, dtype: np.dtype, saturate: int = 1):
    if x.dtype == object or dtype == object:
        raise Unsupported("string casts")
    wanted = np.dtype(dtype)
    dtype = np.dtype(float_compute(n, dtype))
    if dtype != wanted and x.dtype != dtype:  # float32 computed as fp16/bf16: saturate, never inf
        return narrow_float(x, dtype)
    m = xp(x)
    if dtype in _SATURATING and saturate and np.issubdtype(x.dtype, np.floating):
        limit = float(ml_dtypes.finfo(dtype).max)
        clipped = m.clip(x.astype(np.float32) if x.dtype != np.float64 else x, -limit, limit)
        x = m.where(m.isnan(x), x, clipped) if m is np else jnp.where(jnp.isnan(x), x, clipped)
    if dtype.name in ("int4", "uint4", "int2", "uint2") and np.issubdtype(x.dtype, np.floating):
        # ONNX wraps out-of-range values modulo 2^bits (as an integer cast does); XLA's direct
        # float->s4 conversion saturates, so go through int32.
        x = x.astype(np.int32)
    if m is np:
        return np.asarray(x).astype(dtype)
    return x.astype(dtype)


@op("Cast")
def cast(n, x):
    return cast_to(n, x, onnx_dtype(n["to"]), n.attr("saturate", 1))


@op("CastLike")
def cast_like(n, x, like):
    return cast_to(n, x, np.dtype(like.dtype), n.attr("saturate", 1))


@op("EyeLike")
def eye_like(n, x):
    dtype = onnx_dtype(n["dtype"]) if n.attr("dtype") is not None else x.dtype
    return xp(x).eye(x.shape[0], x.shape[1], k=n.attr("k", 0), dtype=dtype)


@op("Pad")
def pad(n, x, pads=None, value=None, axes=None):
    mode = n.attr("mode", "constant")
    if n.opset >= 11:
        pads = static_ints(pads, "Pad pads")
        constant_value = value
    else:
        pads = list(n.attr("pads") or n.attr("paddings"))
        constant_value = np.asarray(n.attr("value", 0.0), x.dtype)
    rank = x.ndim
    axes_list = static_ints(axes, "Pad axes") if axes is not None else list(range(rank))
    axes_list = [norm_axis(a, rank) for a in axes_list]
    width = [[0, 0] for _ in range(rank)]
    k = len(axes_list)
    for i, a in enumerate(axes_list):
        width[a] = [pads[i], pads[i + k]]
    return pad_array(x, width, mode, constant_value)


def pad_array(x, width, mode, constant_value=None):
    m = xp(x, constant_value)
    # negative pads crop
    index = tuple(slice(max(-lo, 0), x.shape[i] - max(-hi, 0)) for i, (lo, hi) in enumerate(width))
    x = x[index]
    width = [(max(lo, 0), max(hi, 0)) for lo, hi in width]
    if mode == "constant":
        cv = 0 if constant_value is None else constant_value
        if not is_const(cv) and m is jnp:
            return jnp.pad(x, width, mode="constant", constant_values=jnp.asarray(cv).reshape(()).astype(x.dtype))
        return m.pad(x, width, mode="constant", constant_values=np.asarray(cv).reshape(()).astype(x.dtype))
    numpy_mode = {"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode]
    return m.pad(x, width, mode=numpy_mode)
