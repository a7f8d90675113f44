"""Quantization: QuantizeLinear, DequantizeLinear (per-tensor, per-axis, blocked; int8/uint8/int4/fp8),
DynamicQuantizeLinear, QLinearMatMul, QLinearConv, and the compile-time DequantizeLinear->MatMul fusion."""

from __future__ import annotations

import ml_dtypes

from . import op
from ._common import jnp, norm_axis, np

_INT_RANGES = {}


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
    if x.dtype == jnp.int32:
        values = x.astype(jnp.float32)
    else:
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


# -- DequantizeLinear -> MatMul with a constant quantized weight -----------------------------

@op("QMatMul", domain="portarun.xla")
def qmatmul(n, x, wq, scale, zero=None):
    """x @ dequantize(wq) with the weight read as int8/int4 and the scales applied after the dot.

    ``wq`` is [K, N]. Per-output-channel (scale [N]): (x @ wq) * scale. Blocked along K
    (scale [K/B, N]): partial dots per block [..., K/B, N], scaled, then summed. A zero
    point z contributes -(sum of x over the block) * z * scale.
    With the ``chunks`` attribute the weight comes pre-split for CPUs (see ``qmatmul_chunked``).
    """
    if n.attr("chunks"):
        return qmatmul_chunked(n, x, wq, scale, zero)
    block = n.attr("block_size", 0)
    dtype = x.dtype
    acc = jnp.float32
    w = wq.astype(dtype)
    if not block:
        y = jnp.matmul(x, w, preferred_element_type=acc)
        if zero is not None:
            y = y - jnp.sum(x.astype(acc), axis=-1, keepdims=True) * zero.astype(acc)
        return (y * scale.astype(acc)).astype(dtype)
    K, N = wq.shape
    groups = K // block
    xg = x.reshape(x.shape[:-1] + (groups, block))
    wg = w.reshape(groups, block, N)
    partial = jnp.einsum("...gk,gkn->...gn", xg, wg, preferred_element_type=acc)
    if zero is not None:
        partial = partial - jnp.sum(xg.astype(acc), axis=-1)[..., None] * zero.astype(acc)
    return jnp.sum(partial * scale.astype(acc), axis=-2).astype(dtype)


def qmatmul_chunked(n, x, wq, scale, zero=None):
    """The CPU form: ``wq`` [C, K, B] (N split into C chunks of B columns, zero-padded), scale and
    zero [C, G, B] (G = 1 per channel, K/block blocked). A scan dequantizes one chunk at a time
    into a small buffer that stays in cache and multiplies it: XLA on CPU does not fuse a
    convert into a dot, so dequantizing the whole weight at once writes (and, for large
    weights, page-faults in) a float copy of it on every call, which made int8 decoding ~10x
    slower than fp32. Chunked, the weight is read once, as int8/int4.

    4-bit weights (``packed``) arrive as bytes [C, K/2, B]: the low nibble holds rows [0, K/2),
    the high nibble rows [K/2, K), so unpacking needs no interleave and the product is two dots.
    """
    import jax

    dtype = x.dtype
    acc = jnp.float32
    chunks, rows, B = wq.shape
    packed = n.attr("packed")
    K = rows * 2 if packed else rows
    groups = scale.shape[1]
    n_out = int(n.attr("n"))
    xf = x.astype(acc)

    def one_chunk(carry, parts):
        w, s = parts[0], parts[1]
        z = parts[2].astype(acc) if len(parts) > 2 else None
        if groups > 1:
            s = jnp.repeat(s.astype(acc), K // groups, axis=0, total_repeat_length=K)
            z = None if z is None else jnp.repeat(z, K // groups, axis=0, total_repeat_length=K)

        def dequantized(q, start, stop):
            f = q.astype(acc)
            if z is not None:
                f = f - (z[start:stop] if groups > 1 else z)
            return f * s[start:stop] if groups > 1 else f

        if packed == "int4":
            signed = w.astype(jnp.int8)
            low, high = jnp.right_shift(jnp.left_shift(signed, 4), 4), jnp.right_shift(signed, 4)
        elif packed == "uint4":
            low, high = jnp.bitwise_and(w, 15), jnp.right_shift(w, 4)
        if packed:
            half = K // 2
            y = jnp.matmul(xf[..., :half], dequantized(low, 0, half)) + \
                jnp.matmul(xf[..., half:], dequantized(high, half, K))
        else:
            y = jnp.matmul(xf, dequantized(w, 0, K))
        return carry, (y if groups > 1 else y * s.astype(acc)[0])

    parts = (wq, scale) + ((zero,) if zero is not None else ())
    _, ys = jax.lax.scan(one_chunk, 0, parts)  # [C, ..., B]
    y = jnp.moveaxis(ys, 0, -2).reshape(x.shape[:-1] + (chunks * B,))
    return y[..., :n_out].astype(dtype)


def pack_halves(array: np.ndarray, axis: int) -> np.ndarray | None:
    """int4/uint4 ``array`` as uint8 bytes: the low nibble from the first half of ``axis``, the high
    nibble from the second half (None when the axis has odd length). Real 4-bit storage on the
    device, in plain bytes: jaxlib 0.10's CPU int4 device arrays came with layouts its compiled
    programs reject, and jit's dispatch then re-laid out every int4 weight on every call."""
    size = array.shape[axis]
    if size % 2:
        return None
    wide = array.astype(np.int16)
    low = np.take(wide, np.arange(size // 2), axis=axis)
    high = np.take(wide, np.arange(size // 2, size), axis=axis)
    return ((low & 15) | ((high & 15) << 4)).astype(np.uint8)


def unpack_halves(packed, kind: str, axis: int = -1):
    """The inverse of ``pack_halves`` on the device (int8 for int4, uint8 for uint4)."""
    if kind == "int4":
        signed = packed.astype(jnp.int8)
        low, high = jnp.right_shift(jnp.left_shift(signed, 4), 4), jnp.right_shift(signed, 4)
    else:
        low, high = jnp.bitwise_and(packed, 15), jnp.right_shift(packed, 4)
    return jnp.concatenate([low, high], axis=axis)


def _packing_of(array: np.ndarray) -> str | None:
    name = np.dtype(array.dtype).name
    return name if name in ("int4", "uint4") else None


# Elements of one dequantized chunk: 512K floats (2 MB) fit in a core's L2 cache with room to spare.
CHUNK_ELEMENTS = 1 << 19


def chunk_width(K: int, N: int, limit: int | None = None) -> int:
    """Columns per chunk: the widest multiple of 128 dividing N within ``limit`` elements; else padded."""
    limit = CHUNK_ELEMENTS if limit is None else limit
    if K * N <= limit:
        return N
    widest = max(128, (limit // K) // 128 * 128)
    for width in range(widest, 127, -128):
        if N % width == 0 and width * 4 >= widest:
            return width
    return widest


def _chunked(array: np.ndarray, width: int) -> np.ndarray:
    """[R, N] -> [C, R, width], N zero-padded to a multiple of width."""
    rows, cols = array.shape
    count = -(-cols // width)
    padded = np.zeros((rows, count * width), dtype=array.dtype)
    padded[:, :cols] = array
    return np.ascontiguousarray(padded.reshape(rows, count, width).transpose(1, 0, 2))


def fuse_dequantize_matmul(graph, weights, constants, uses, *, chunk: bool = False) -> int:
    """Replace DequantizeLinear(W const) -> MatMul(x, .) by QMatMul when the form allows it.

    ``chunk`` (CPUs): store the weight and its parameters split along N for ``qmatmul_chunked``."""
    producers = {out: node for node in graph.nodes for out in node.outputs}
    fused = 0
    remove = set()
    for node in graph.nodes:
        if node.op_type != "MatMul" or node.domain:
            continue
        dq = producers.get(node.inputs[1])
        if dq is None or dq.op_type != "DequantizeLinear" or uses[dq.outputs[0]] != 1:
            continue
        operands = _constant_dequantize(dq, weights, constants, uses)
        if operands is None:
            continue
        wq, scale, zero_name, zero, axis, block = operands
        w_name, scale_name = dq.inputs[0], dq.inputs[1]
        K, N = wq.shape
        if block:
            if axis != 0 or K % block or scale.shape != (K // block, N):
                continue
        elif scale.ndim == 1 and scale.shape == (N,) and axis == 1:
            pass
        elif scale.size == 1:
            block = 0
        else:
            continue
        if dq.attr("output_dtype"):
            continue
        node.op_type = "QMatMul"
        node.domain = "portarun.xla"
        node.fn = qmatmul
        node.fold = False
        node.inputs = [node.inputs[0], w_name, scale_name] + ([zero_name] if zero_name else [])
        node.attrs = {"block_size": block}
        if chunk:
            node.inputs = _store_chunked(node, wq, scale, zero, block, weights, constants, uses)
        remove.add(id(dq))
        fused += 1
    if remove:
        graph.nodes = [nd for nd in graph.nodes if id(nd) not in remove]
    return fused


def _constant_dequantize(dq, weights, constants, uses):
    """(int weight [2-D], scale, zero point name, zero point, axis >= 0, block size) of a DequantizeLinear
    whose operands are all constants, or None. An all-zero zero point is dropped (the symmetric form)."""
    w_name, scale_name = dq.inputs[0], dq.inputs[1]
    zero_name = dq.inputs[2] if len(dq.inputs) > 2 and dq.inputs[2] else None
    wq = weights.get(w_name, constants.get(w_name))
    scale = weights.get(scale_name, constants.get(scale_name))
    zero = weights.get(zero_name, constants.get(zero_name)) if zero_name else None
    if wq is None or scale is None or wq.ndim != 2 or (zero_name and zero is None):
        return None
    if zero is not None and not np.asarray(zero).astype(np.int32).any():
        zero_name = zero = _drop_zero_point(dq.inputs[2], weights, constants, uses)
    axis = dq.attr("axis", 1)
    return wq, scale, zero_name, zero, axis + 2 if axis < 0 else axis, dq.attr("block_size", 0) or 0


def _drop_zero_point(name, weights, constants, uses) -> None:
    """An all-zero zero point (symmetric quantization) subtracts nothing: leave it out of the program."""
    uses[name] -= 1
    if uses[name] <= 0:
        weights.pop(name, None)
        constants.pop(name, None)
    return None


def _store_chunked(node, wq, scale, zero, block, weights, constants, uses) -> list[str]:
    """Add the [C, K, B] weight and [C, G, B] scale/zero for ``node``; returns its new inputs."""
    K, N = wq.shape
    width = chunk_width(K, N)
    groups = K // block if block else 1

    def grid(param):  # per tensor [] / per channel [N] / blocked [G, N] -> [G, N]
        param = np.asarray(param)
        return np.broadcast_to(param.reshape(-1)[0] if param.size == 1 else param, (groups, N))

    packing = _packing_of(wq) if K % 2 == 0 else None
    names = [node.inputs[0]]
    for role, array in (("w", wq), ("scale", grid(scale)), ("zero", None if zero is None else grid(zero))):
        if array is None:
            continue
        source = node.inputs[len(names)]
        name = f"{source}::chunks{width}"
        if name not in weights:
            chunked = _chunked(np.asarray(array), width)
            if role == "w" and packing:
                chunked = pack_halves(chunked, axis=1)
            elif role == "zero" and _packing_of(chunked):
                chunked = chunked.astype(np.int8 if packing == "int4" or chunked.dtype.name == "int4" else np.uint8)
            weights[name] = chunked
        uses[source] -= 1
        if uses[source] <= 0:
            weights.pop(source, None)
            constants.pop(source, None)
        uses[name] += 1
        names.append(name)
    node.attrs.update(chunks=True, n=N, packed=packing)
    return names


@op("QGather", domain="portarun.xla")
def qgather(n, wq, indices, scale, zero=None):
    """Gather(DequantizeLinear(wq), indices) along axis 0, dequantizing only the gathered rows.

    The quantized embedding table stays int8/int4 on the device; dequantizing all of it
    before the Gather (as written) costs a full float table per call for one row per token."""
    rows_total = wq.shape[0]
    indices = jnp.asarray(indices)
    indices = jnp.where(indices < 0, indices + rows_total, indices)
    acc = jnp.float32
    values = jnp.take(wq, indices, axis=0)
    if n.attr("packed"):
        values = unpack_halves(values, n.attr("packed"), axis=-1)
    values = values.astype(acc)
    width = values.shape[-1]
    mode = n.attr("mode")

    def param(p):
        p = jnp.asarray(p)
        if mode == "tensor":
            return p.reshape(()).astype(acc)
        picked = jnp.take(p, indices, axis=0).astype(acc)
        if mode == "row":
            return picked[..., None]
        return jnp.repeat(picked, n.attr("block_size"), axis=-1, total_repeat_length=width)

    if zero is not None:
        values = values - param(zero)
    return (values * param(scale)).astype(scale.dtype)


def fuse_dequantize_gather(graph, weights, constants, uses, *, pack: bool = False) -> int:
    """Replace Gather(DequantizeLinear(W const 2-D), ids) along axis 0 by QGather.

    ``pack`` (CPUs): a 4-bit table is stored as bytes (``pack_halves``) and unpacked per gathered row."""
    producers = {out: node for node in graph.nodes for out in node.outputs}
    fused = 0
    remove = set()
    for node in graph.nodes:
        if node.op_type != "Gather" or node.domain or node.attr("axis", 0) != 0:
            continue
        dq = producers.get(node.inputs[0])
        if dq is None or dq.op_type != "DequantizeLinear" or uses[dq.outputs[0]] != 1 or dq.attr("output_dtype"):
            continue
        operands = _constant_dequantize(dq, weights, constants, uses)
        if operands is None:
            continue
        wq, scale, zero_name, zero, axis, block = operands
        w_name, scale_name = dq.inputs[0], dq.inputs[1]
        rows, cols = wq.shape
        if scale.size == 1 and not block:
            mode = "tensor"
        elif block and axis == 1 and cols % block == 0 and scale.shape == (rows, cols // block):
            mode = "block"
        elif not block and axis == 0 and scale.shape == (rows,):
            mode = "row"
        else:
            continue
        node.op_type = "QGather"
        node.domain = "portarun.xla"
        node.fn = qgather
        node.fold = False
        node.inputs = [w_name, node.inputs[1], scale_name] + ([zero_name] if zero_name else [])
        node.attrs = {"mode": mode, "block_size": block, "packed": None}
        packing = _packing_of(wq)
        if pack and packing and cols % 2 == 0 and uses[w_name] == 1 and w_name in weights:
            packed_name = f"{w_name}::packed"
            weights[packed_name] = pack_halves(wq, axis=1)
            del weights[w_name]
            node.inputs[0] = packed_name
            node.attrs["packed"] = packing
            if zero is not None and _packing_of(zero):
                widened = f"{zero_name}::wide"
                (weights if zero_name in weights else constants)[widened] = zero.astype(
                    np.int8 if packing == "int4" else np.uint8)
                node.inputs[3] = widened
        remove.add(id(dq))
        fused += 1
    if remove:
        graph.nodes = [nd for nd in graph.nodes if id(nd) not in remove]
    return fused
