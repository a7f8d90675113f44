"""ONNX Runtime contrib ops (``com.microsoft``) that real files carry.

The ones ORT's own tools write: ``onnxruntime.transformers.optimizer`` (Attention,
MultiHeadAttention, EmbedLayerNormalization, SkipLayerNormalization, FastGelu, BiasGelu,
Gelu, QuickGelu, BiasAdd, FusedMatMul, SimplifiedLayerNormalization) and
``onnxruntime.quantization`` (DynamicQuantizeMatMul, MatMulIntegerToFloat, MatMulNBits).
Semantics from onnxruntime's docs/ContribOperators.md, checked against ORT's CPU kernels
in tests/backends/xla/test_contrib_ops.py.
"""

from __future__ import annotations

from jax import lax

from . import op
from ._common import Unsupported, jax, jnp, norm_axis, np, upcast

MS = "com.microsoft"


# -- activations ----------------------------------------------------------------------------

def _gelu_erf(x):
    y, dtype = upcast(jnp.asarray(x))
    return (0.5 * y * (1 + jax.scipy.special.erf(y * np.float32(1 / np.sqrt(2))))).astype(dtype)


def _gelu_tanh(x):
    y, dtype = upcast(jnp.asarray(x))
    inner = np.float32(0.7978845608028654) * (y + np.float32(0.044715) * y * y * y)
    return (0.5 * y * (1 + jnp.tanh(inner))).astype(dtype)


@op("Gelu", domain=MS)
def gelu(n, x):
    return _gelu_erf(x)


@op("BiasGelu", domain=MS)
def bias_gelu(n, x, bias):
    return _gelu_erf(jnp.asarray(x) + bias)


@op("FastGelu", domain=MS)
def fast_gelu(n, x, bias=None):
    x = jnp.asarray(x)
    return _gelu_tanh(x if bias is None else x + bias)


@op("QuickGelu", domain=MS)
def quick_gelu(n, x):
    y, dtype = upcast(jnp.asarray(x))
    return (y * jax.nn.sigmoid(np.float32(n.attr("alpha", 1.702)) * y)).astype(dtype)


@op("BiasAdd", domain=MS)
def bias_add(n, x, bias, skip):
    return jnp.asarray(x) + bias + skip


# -- normalizations -------------------------------------------------------------------------

def _layer_norm(x, gamma, beta, eps: float, simplified: bool, axis: int = -1):
    """(normalized * gamma + beta, mean, inv_std) over the axes from ``axis`` on, statistics in float32."""
    x = jnp.asarray(x)
    dtype = x.dtype
    axes = tuple(range(norm_axis(axis, x.ndim), x.ndim))
    y = x.astype(jnp.float32) if dtype != jnp.float64 else x
    if simplified:
        mean = None
        inv = lax.rsqrt(jnp.mean(y * y, axis=axes, keepdims=True) + jnp.asarray(eps, y.dtype))
        normed = y * inv
    else:
        mean = jnp.mean(y, axis=axes, keepdims=True)
        centered = y - mean
        inv = lax.rsqrt(jnp.mean(centered * centered, axis=axes, keepdims=True) + jnp.asarray(eps, y.dtype))
        normed = centered * inv
    out = normed * jnp.asarray(gamma).astype(y.dtype)
    if beta is not None:
        out = out + jnp.asarray(beta).astype(y.dtype)
    return out.astype(dtype), mean, inv


def _norm_outputs(n, out, mean, inv, extra=None):
    outs = [out]
    if n.output_used(1):
        outs.append(mean if mean is not None else jnp.zeros_like(inv))
    elif n.n_outputs > 1:
        outs.append(None)
    if n.output_used(2):
        outs.append(inv)
    elif n.n_outputs > 2:
        outs.append(None)
    if n.n_outputs > 3:
        outs.append(extra if n.output_used(3) else None)
    return tuple(outs) if len(outs) > 1 else outs[0]


@op("SkipLayerNormalization", domain=MS)
def skip_layer_norm(n, x, skip, gamma, beta=None, bias=None):
    total = jnp.asarray(x) + skip
    if bias is not None:
        total = total + bias
    out, mean, inv = _layer_norm(total, gamma, beta, n.attr("epsilon", 1e-12), simplified=False)
    return _norm_outputs(n, out, mean, inv, total)


@op("SkipSimplifiedLayerNormalization", domain=MS)
def skip_simplified_layer_norm(n, x, skip, gamma, bias=None):
    total = jnp.asarray(x) + skip
    if bias is not None:
        total = total + bias
    out, mean, inv = _layer_norm(total, gamma, None, n.attr("epsilon", 1e-12), simplified=True)
    return _norm_outputs(n, out, mean, inv, total)


@op("LayerNormalization", domain=MS)
def layer_norm(n, x, scale, bias=None):
    out, mean, inv = _layer_norm(x, scale, bias, n.attr("epsilon", 1e-5), False, n.attr("axis", -1))
    return _norm_outputs(n, out, mean, inv)


# ORT registers SimplifiedLayerNormalization in the ONNX domain (a contrib op, not a standard one)
@op("SimplifiedLayerNormalization")
@op("SimplifiedLayerNormalization", domain=MS)
def simplified_layer_norm(n, x, scale, bias=None):
    out, _, inv = _layer_norm(x, scale, bias, n.attr("epsilon", 1e-5), True, n.attr("axis", -1))
    return (out, inv) if n.output_used(1) else out


def _dequantized(q, scale, zero):
    q = jnp.asarray(q).astype(jnp.float32)
    if zero is not None:
        q = q - jnp.asarray(zero).astype(jnp.float32)
    return q * jnp.asarray(scale).astype(jnp.float32)


@op("QEmbedLayerNormalization", domain=MS)
def q_embed_layer_norm(n, input_ids, segment_ids, word, position, segment, gamma, beta, mask, word_scale,
                       position_scale, segment_scale, gamma_scale, beta_scale, word_zero, position_zero,
                       segment_zero, gamma_zero, beta_zero):
    """EmbedLayerNormalization over uint8 tables (quantize_dynamic of a fused embedding)."""
    tables = [_dequantized(word, word_scale, word_zero), _dequantized(position, position_scale, position_zero),
              None if segment is None else _dequantized(segment, segment_scale, segment_zero),
              _dequantized(gamma, gamma_scale, gamma_zero), _dequantized(beta, beta_scale, beta_zero)]
    return embed_layer_norm(n, input_ids, segment_ids, *tables, mask)


@op("EmbedLayerNormalization", domain=MS)
def embed_layer_norm(n, input_ids, segment_ids, word, position, segment, gamma, beta, mask=None, position_ids=None):
    ids = jnp.asarray(input_ids).astype(jnp.int32)
    batch, seq = ids.shape
    total = jnp.take(jnp.asarray(word), ids, axis=0)
    if position_ids is None:
        positions = jnp.broadcast_to(jnp.arange(seq, dtype=jnp.int32)[None, :], (batch, seq))
    else:
        positions = jnp.broadcast_to(jnp.asarray(position_ids).astype(jnp.int32), (batch, seq))
    total = total + jnp.take(jnp.asarray(position), positions, axis=0)
    if segment_ids is not None and segment is not None:
        total = total + jnp.take(jnp.asarray(segment), jnp.asarray(segment_ids).astype(jnp.int32), axis=0)
    out, _, _ = _layer_norm(total, gamma, beta, n.attr("epsilon", 1e-12), simplified=False)
    outs = [out]
    if n.n_outputs > 1:
        if mask is None:
            index = jnp.zeros((batch,), jnp.int32)
        else:
            index = jnp.sum(jnp.asarray(mask).astype(jnp.int32), axis=1).astype(jnp.int32)
        outs.append(index if n.output_used(1) else None)
    if n.n_outputs > 2:
        outs.append(total if n.output_used(2) else None)
    return tuple(outs) if len(outs) > 1 else out


# -- matmuls ----------------------------------------------------------------------------------

@op("FusedMatMul", domain=MS)
def fused_matmul(n, a, b):
    if n.attr("transBatchA", 0) or n.attr("transBatchB", 0):
        raise Unsupported("FusedMatMul with transBatchA/transBatchB")
    a, b = jnp.asarray(a), jnp.asarray(b)
    if n.attr("transA", 0):
        a = jnp.swapaxes(a, -1, -2)
    if n.attr("transB", 0):
        b = jnp.swapaxes(b, -1, -2)
    y = jnp.matmul(a, b)
    alpha = n.attr("alpha", 1.0)
    return y if alpha == 1.0 else y * jnp.asarray(alpha, y.dtype)


def _quantize_dynamic_u8(x):
    """DynamicQuantizeLinear's uint8 quantization (ORT's GetQuantizationParameter)."""
    x = jnp.asarray(x).astype(jnp.float32)
    lo = jnp.minimum(jnp.min(x), 0.0)
    hi = jnp.maximum(jnp.max(x), 0.0)
    scale = (hi - lo) / 255.0
    safe = jnp.where(scale == 0, 1.0, scale)
    zero = jnp.clip(jnp.round(0 - lo / safe), 0, 255)
    q = jnp.clip(jnp.round(x / safe) + zero, 0, 255)
    return q.astype(jnp.int32), scale, zero.astype(jnp.int32)


def _column_vector(v):
    v = jnp.asarray(v)
    return v.reshape(-1) if v.size > 1 else v.reshape(())


@op("DynamicQuantizeMatMul", domain=MS)
def dynamic_quantize_matmul(n, a, b, b_scale, b_zero=None, bias=None):
    qa, a_scale, a_zero = _quantize_dynamic_u8(a)
    qb = jnp.asarray(b).astype(jnp.int32)
    if b_zero is not None:
        qb = qb - _column_vector(b_zero).astype(jnp.int32)
    acc = jnp.matmul(qa - a_zero, qb, preferred_element_type=jnp.int32)
    y = acc.astype(jnp.float32) * (a_scale * _column_vector(b_scale).astype(jnp.float32))
    return y if bias is None else y + bias


@op("MatMulIntegerToFloat", domain=MS)
def matmul_integer_to_float(n, a, b, a_scale, b_scale, a_zero=None, b_zero=None, bias=None):
    qa = jnp.asarray(a).astype(jnp.int32)
    qb = jnp.asarray(b).astype(jnp.int32)
    if a_zero is not None:
        qa = qa - jnp.asarray(a_zero).astype(jnp.int32).reshape(())
    if b_zero is not None:
        qb = qb - _column_vector(b_zero).astype(jnp.int32)
    acc = jnp.matmul(qa, qb, preferred_element_type=jnp.int32)
    scale = jnp.asarray(a_scale).astype(jnp.float32).reshape(()) * _column_vector(b_scale)
    y = acc.astype(jnp.float32) * scale.astype(jnp.float32)
    return y if bias is None else y + bias


def _unpack_bits(packed, bits: int):
    """uint8 [..., bytes] -> [..., bytes * 8 / bits] values, lowest bits first (ORT's packing)."""
    packed = jnp.asarray(packed).astype(jnp.uint8)
    if bits == 8:
        return packed.astype(jnp.int32)
    per_byte = 8 // bits
    shifts = jnp.arange(per_byte, dtype=jnp.uint8) * bits
    values = (packed[..., None] >> shifts) & ((1 << bits) - 1)
    return values.reshape(packed.shape[:-1] + (packed.shape[-1] * per_byte,)).astype(jnp.int32)


@op("MatMulNBits", domain=MS)
def matmul_nbits(n, a, b, scales, zero_points=None, g_idx=None, bias=None):
    k, cols, bits, block = int(n["K"]), int(n["N"]), int(n.attr("bits", 4)), int(n["block_size"])
    if bits not in (2, 4, 8):
        raise Unsupported(f"MatMulNBits with bits={bits}")
    if g_idx is not None:
        raise Unsupported("MatMulNBits with g_idx (act-order)")
    blocks = -(-k // block)
    q = _unpack_bits(jnp.asarray(b).reshape(cols, blocks, -1), bits)[:, :, :block]  # [N, blocks, block]
    scale = jnp.asarray(scales).reshape(cols, blocks)
    compute = jnp.float32 if scale.dtype != jnp.float64 else jnp.float64
    if zero_points is None:
        zero = jnp.full((cols, blocks), float(1 << (bits - 1)), compute)
    elif jnp.asarray(zero_points).dtype == jnp.uint8:
        zero = _unpack_bits(jnp.asarray(zero_points).reshape(cols, -1), bits)[:, :blocks].astype(compute)
    else:  # zero points in the scales' float type
        zero = jnp.asarray(zero_points).reshape(cols, blocks).astype(compute)
    weight = (q.astype(compute) - zero[:, :, None]) * scale.astype(compute)[:, :, None]
    weight = weight.reshape(cols, blocks * block)[:, :k]  # [N, K]
    a = jnp.asarray(a)
    y = jnp.matmul(a.astype(compute), weight.T).astype(a.dtype)
    return y if bias is None else y + bias


@op("GatherBlockQuantized", domain=MS)
def gather_block_quantized(n, data, indices, scales, zero_points=None):
    """Rows of a block-quantized 4-bit table (int4/uint4, or uint8 holding two values per byte),
    gathered first and dequantized after: only the gathered rows are expanded."""
    bits, block = int(n.attr("bits", 4)), int(n.attr("block_size", 128))
    data = jnp.asarray(data)
    gather_axis = norm_axis(int(n.attr("gather_axis", 0)), data.ndim)
    quantize_axis = norm_axis(int(n.attr("quantize_axis", 1)), data.ndim)
    if bits != 4 or gather_axis != 0 or quantize_axis != data.ndim - 1:
        raise Unsupported("GatherBlockQuantized other than 4 bits, gather_axis 0, quantize_axis last")
    packed = data.dtype == jnp.uint8
    indices = jnp.asarray(indices).astype(jnp.int32)
    indices = jnp.where(indices < 0, indices + data.shape[0], indices)
    rows = jnp.take(data, indices, axis=0)
    values = _unpack_bits(rows, 4) if packed else rows.astype(jnp.int32)
    scale = jnp.take(jnp.asarray(scales), indices, axis=0)
    if zero_points is None:
        zero = jnp.full(scale.shape, 0 if data.dtype == jnp.int4 else 8, jnp.int32)
    else:
        zero = jnp.take(jnp.asarray(zero_points), indices, axis=0)
        zero = _unpack_bits(zero, 4)[..., :scale.shape[-1]] if zero.dtype == jnp.uint8 and packed else \
            zero.astype(jnp.int32)
    width = values.shape[-1]
    expand = lambda v: jnp.repeat(v, block, axis=-1)[..., :width]  # noqa: E731
    out = (values - expand(zero)).astype(scale.dtype) * expand(scale)
    return out


# -- attention ---------------------------------------------------------------------------------

def _heads(x, heads: int):
    """[B, S, N*H] -> [B, N, S, H]."""
    b, s, d = x.shape
    return x.reshape(b, s, heads, d // heads).transpose(0, 2, 1, 3)


def _key_mask(mask, batch: int, seq: int, total: int):
    """ORT's mask_index / key_padding_mask forms -> bool [B, 1 or S, T], True where a key is masked."""
    mask = jnp.asarray(mask)
    positions = jnp.arange(total)
    if mask.ndim == 1 and mask.shape[0] == batch:  # right padding: valid lengths
        return (positions[None, :] >= mask[:, None])[:, None, :]
    if mask.ndim == 1 and mask.shape[0] == 2 * batch:  # left padding: end positions, then start positions
        end, start = mask[:batch], mask[batch:]
        return ((positions[None, :] >= end[:, None]) | (positions[None, :] < start[:, None]))[:, None, :]
    if mask.ndim == 2:
        return (mask == 0)[:, None, :]
    if mask.ndim == 3:
        return mask == 0
    raise Unsupported(f"attention mask of shape {tuple(mask.shape)}")


def _attend(q, k, v, *, scale: float, mask_value: float, key_mask=None, causal_past: int | None = None,
            bias=None):
    """softmax(q k^T * scale + masks + bias) v for [B, N, S, H] heads -> [B, S, N*Hv]."""
    q32, dtype = upcast(q)
    k32, v32 = upcast(k)[0], upcast(v)[0]
    scores = jnp.einsum("bnsh,bnth->bnst", q32, k32) * np.float32(scale)
    seq, total = scores.shape[2], scores.shape[3]
    masked = None
    if key_mask is not None:
        masked = key_mask[:, None, :, :]
    if causal_past is not None:
        future = jnp.arange(total)[None, :] > (jnp.arange(seq)[:, None] + causal_past)
        masked = future[None, None] if masked is None else (masked | future[None, None])
    if masked is not None:
        scores = scores + jnp.where(masked, np.float32(mask_value), np.float32(0))
    if bias is not None:
        scores = scores + upcast(jnp.asarray(bias))[0]
    probs = jax.nn.softmax(scores, axis=-1)
    out = jnp.einsum("bnst,bnth->bnsh", probs, v32)
    b, heads, s, h = out.shape
    return out.transpose(0, 2, 1, 3).reshape(b, s, heads * h).astype(dtype)


@op("Attention", domain=MS)
def attention(n, x, weights, bias=None, mask_index=None, past=None, attention_bias=None, past_sequence_length=None):
    x = jnp.asarray(x)
    qkv = jnp.matmul(x, weights)
    if bias is not None:
        qkv = qkv + bias
    return _self_attention(n, qkv, x.dtype, mask_index, past, attention_bias)


@op("QAttention", domain=MS)
def q_attention(n, x, weight, bias, x_scale, weight_scale, mask_index=None, x_zero=None, weight_zero=None, past=None):
    """Attention over a uint8/int8 input and weight (what quantize_dynamic writes for a fused Attention)."""
    qx = jnp.asarray(x).astype(jnp.int32)
    if x_zero is not None:
        qx = qx - jnp.asarray(x_zero).astype(jnp.int32).reshape(())
    qw = jnp.asarray(weight).astype(jnp.int32)
    if weight_zero is not None:
        qw = qw - _column_vector(weight_zero).astype(jnp.int32)
    acc = jnp.matmul(qx, qw, preferred_element_type=jnp.int32)
    scale = jnp.asarray(x_scale).astype(jnp.float32).reshape(()) * _column_vector(weight_scale)
    qkv = acc.astype(jnp.float32) * scale.astype(jnp.float32) + bias
    return _self_attention(n, qkv, jnp.asarray(bias).dtype, mask_index, past, None)


def _self_attention(n, qkv, dtype, mask_index, past, attention_bias):
    if n.attr("do_rotary", 0) or n.attr("past_present_share_buffer", 0):
        raise Unsupported(f"{n.node.op_type} with do_rotary or past_present_share_buffer")
    heads = int(n["num_heads"])
    sizes = n.attr("qkv_hidden_sizes") or [qkv.shape[-1] // 3] * 3
    q, k, v = jnp.split(qkv, [sizes[0], sizes[0] + sizes[1]], axis=-1)
    q, k, v = _heads(q, heads), _heads(k, heads), _heads(v, heads)
    past_len = 0
    if past is not None:
        past = jnp.asarray(past)
        past_len = past.shape[3]
        k = jnp.concatenate([past[0], k], axis=2)
        v = jnp.concatenate([past[1], v], axis=2)
    batch, seq, total = qkv.shape[0], qkv.shape[1], k.shape[2]
    scale = n.attr("scale") or 1.0 / np.sqrt(sizes[0] // heads)
    key_mask = None if mask_index is None else _key_mask(mask_index, batch, seq, total)
    out = _attend(q, k, v, scale=scale, mask_value=n.attr("mask_filter_value", -10000.0), key_mask=key_mask,
                  causal_past=past_len if n.attr("unidirectional", 0) else None, bias=attention_bias)
    out = out.astype(dtype)
    if n.output_used(1):
        return out, jnp.stack([k, v]).astype(dtype)
    return (out, None) if n.n_outputs > 1 else out


@op("MultiHeadAttention", domain=MS)
def multi_head_attention(n, query, key=None, value=None, bias=None, key_padding_mask=None, attention_bias=None,
                         past_key=None, past_value=None, past_sequence_length=None, cache_indirection=None):
    if past_sequence_length is not None or cache_indirection is not None:
        raise Unsupported("MultiHeadAttention with past_sequence_length / cache_indirection")
    heads = int(n["num_heads"])
    query = jnp.asarray(query)
    if key is None:  # packed QKV [B, S, N, 3, H]: ORT's CPU kernel has none either
        raise Unsupported("MultiHeadAttention with packed QKV (query [B, S, N, 3, H])")
    key = jnp.asarray(key)
    d = query.shape[-1]
    if bias is not None:
        bias = jnp.asarray(bias)
        query = query + bias[:d]
    if key.ndim == 5:  # packed KV [B, L, N, 2, H]
        k, v = key[:, :, :, 0].transpose(0, 2, 1, 3), key[:, :, :, 1].transpose(0, 2, 1, 3)
    elif key.ndim == 4:  # already [B, N, L, H] (cross attention with projected keys): no bias
        k, v = key, jnp.asarray(value)
    else:
        value = jnp.asarray(value)
        if bias is not None:
            key, value = key + bias[d:2 * d], value + bias[2 * d:]
        k, v = _heads(key, heads), _heads(value, heads)
    q = _heads(query, heads)
    past_len = 0
    if past_key is not None:
        past_len = jnp.asarray(past_key).shape[2]
        k = jnp.concatenate([jnp.asarray(past_key), k], axis=2)
        v = jnp.concatenate([jnp.asarray(past_value), v], axis=2)
    batch, seq, total = q.shape[0], q.shape[2], k.shape[2]
    scale = n.attr("scale") or 1.0 / np.sqrt(q.shape[-1])
    key_mask = None if key_padding_mask is None else _key_mask(key_padding_mask, batch, seq, total)
    out = _attend(q, k, v, scale=scale, mask_value=n.attr("mask_filter_value", -10000.0), key_mask=key_mask,
                  causal_past=past_len if n.attr("unidirectional", 0) else None, bias=attention_bias)
    outs = [out]
    if n.n_outputs > 1:
        outs.append(k.astype(query.dtype) if n.output_used(1) else None)
    if n.n_outputs > 2:
        outs.append(v.astype(query.dtype) if n.output_used(2) else None)
    if n.n_outputs > 3:
        if n.output_used(3):
            raise Unsupported("MultiHeadAttention's qk output")
        outs.append(None)
    return tuple(outs) if len(outs) > 1 else out


__all__ = ["MS"]
