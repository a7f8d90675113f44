"""QMatMul's ``int8dot`` form (CPUs): float activations written exactly enough as three int8 digits, and one
integer dot against the int8 weight (4-bit weights unpacked to int8 one cache-sized tile at a time).

XLA on CPU does not fuse a convert into a dot, so a float dot over an int8 weight first writes a float copy
of it (the ``chunked`` form bounds that copy to a cache-sized chunk, still 2x slower than fp32 at batch 1),
while an s8 x s8 -> s32 dot_general runs as one fused YNNPACK GEMM that reads the weight once, as int8.
The activations stay float-accurate: per row of x, with m = max|x| / 63,

    x / m = d0 + d1 / 128 + d2 / 128**2 + e,   d0 in [-63, 63], d1, d2 in [-64, 64], |e| <= 0.5 / 128**2

so the digits carry x to ~2^-21 of the row's largest value (this is not activation quantization), and the
three digit rows are stacked into ONE integer dot, whose int32 sums are exact (K < 262,144). The scales
apply to those sums (per block of K: per-block partial sums, scaled, then added), a zero point z subtracts
z * (sum of the digits) in the integers, and m multiplies last, so NaN/Inf in a row of x gives a non-finite
row out. Host-side layout: ``fusion._store_int8dot``; the measurements: tools/bench_xla_qmatmul.py.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

# How the activations enter the integer dot; recorded in provenance next to the form.
ACTIVATIONS = "float (3 int8 digits, base 128)"
BASE = 128.0
LEAD = 63.0  # |d0| <= 63, so a carry from rounding the residual never leaves int8
# Elements of an unpacked 4-bit tile: 2M int8 = 2 MB, a Sapphire Rapids core's L2. decoder-small's int4
# decode step vs fp32 in the same run (two runs, load ~5): tiles of 256K 1.20x, 512K 1.35x, 1M 1.51x /
# 1.26x, 2M 1.57x / 1.40x, 4M 1.34x (fewer, larger tiles are fewer ops; past the L2 they are slower).
# The tiles are unrolled, ordered by a data dependency (``_group_sums``): a lax.scan over them kept the
# temporaries as small but measured slower (loop overhead per iteration), and lax.optimization_barrier
# orders nothing on XLA:CPU (the barriers are gone before scheduling).
TILE_ELEMENTS = 1 << 21


def activation_digits(x):
    """x [R, K] float32 -> (digits [3, R, K] int8, m [R, 1] float32) with x ~= m * (d0 + d1/128 + d2/128**2).

    Each residual ``(r - round(r)) * 128`` is exact in float32 (a difference of nearby values times a power
    of two), so the only error is the last rounding."""
    peak = jnp.max(jnp.abs(x), axis=-1, keepdims=True)
    m = jnp.where(peak == 0, jnp.float32(1), peak / LEAD)
    r = x / m
    d0 = jnp.round(r)
    r = (r - d0) * BASE
    d1 = jnp.round(r)
    d2 = jnp.round((r - d1) * BASE)
    # NaN digits (x NaN or Inf) cast to some integer; m is NaN/Inf then and poisons the row at the end
    return jnp.stack([d0, d1, d2]).astype(jnp.int8), m


def _int_dot(lhs, rhs):
    """[rows, K] s8 x [K, N] s8 -> [rows, N] s32: the form XLA:CPU hands to YNNPACK as one fused GEMM."""
    return lax.dot_general(lhs, rhs, (((1,), (0,)), ((), ())), preferred_element_type=jnp.int32)


def _unpacked_times_16(packed):
    """``pack_halves`` bytes of signed 4-bit values -> (16 * low, 16 * high) as int8: one shift or mask each
    (no sign-extending shift back); the caller divides the sums by 16, a power of two, so nothing rounds."""
    signed = lax.bitcast_convert_type(packed, jnp.int8)
    return jnp.left_shift(signed, jnp.int8(4)), jnp.bitwise_and(signed, jnp.int8(-16))


def _group_sums(n, digits, wq, g, width, after):
    """int32 [3R, N] sums of one block of K: digits [3R, B] against block ``g`` of the stored weight, and
    the next ``after`` flag.

    4-bit tiles are unpacked one after another: each unpack reads ``after``, a flag that is never true
    but that XLA cannot prove false, computed from the previous tile's sums. Without that order XLA's
    scheduler runs every unpack first (they are independent), all the int8 copies are live at once (66 MB
    of temporaries for decoder-small's step, freshly page-faulted on every call) instead of one tile."""
    if not n.attr("packed"):
        return _int_dot(digits, wq[g]), after
    N = wq.shape[2]
    tiles = []
    for start in range(0, N, width):
        tile = jnp.where(after, jnp.uint8(0), wq[g, :, start:start + width])
        low, high = _unpacked_times_16(tile)
        tiles.append(_int_dot(digits, jnp.concatenate([low, high], axis=0)))
        after = tiles[-1][0, 0] == jnp.iinfo(jnp.int32).min  # |sums| < 2^31 (K < 262,144)
    return (tiles[0] if len(tiles) == 1 else jnp.concatenate(tiles, axis=1)), after


def _scaled_group(n, block, wq, g, scale, zero, width, unit, after):
    """float32 [3R, N]: one block of K's integer sums, zero point removed (exactly, in int32), scaled;
    and the ``after`` flag for the next block (``_group_sums``)."""
    packed = n.attr("packed")
    sums, after = _group_sums(n, block, wq, g, width, after)
    if zero is not None:  # sum_k d[k] * (w[k, n] - z[n]) = sums - z[n] * sum_k d[k]
        digit_sums = jnp.sum(block.astype(jnp.int32), axis=1, keepdims=True)
        sums = sums - digit_sums * (zero.astype(jnp.int32) * (16 if packed else 1))[None, :]
    return sums.astype(jnp.float32) * (scale.astype(jnp.float32) * unit)[None, :], after


def qmatmul_int8dot(n, x, wq, scale, zero=None):
    """``wq`` [G, B, N] int8 (4-bit ``packed``: [G, B/2, N] bytes, the halves of each block of K in the low
    and high nibbles), scale [G, N] float and zero [G, N] int8 or None; G = 1 per channel or per tensor,
    else K/B blocks (K zero-padded to G * B). Attrs: ``k`` (K as written), ``n`` (N)."""
    dtype = x.dtype
    groups, stored_rows, N = wq.shape
    packed = n.attr("packed")
    rows = stored_rows * 2 if packed else stored_rows
    K = int(n.attr("k"))
    lead = x.shape[:-1]
    R = math.prod(lead)
    if R == 0:  # an empty batch: nothing to digitize (and no row to take the ordering flag from)
        return jnp.zeros(lead + (N,), dtype)
    xf = x.reshape(R, K).astype(jnp.float32)
    if groups * rows > K:  # the padded weight rows are zero; so are the digits that meet them
        xf = jnp.pad(xf, ((0, 0), (0, groups * rows - K)))
    digits, m = activation_digits(xf)
    digits = digits.reshape(3 * R, groups * rows)
    width = max(128, TILE_ELEMENTS // rows // 128 * 128) if packed else N
    unit = jnp.float32(1 / 16) if packed else jnp.float32(1)  # 4-bit tiles hold 16x the weight
    acc = None
    after = m[0, 0] < 0  # never true (m > 0, or NaN): the first unpack waits for this call's x
    for g in range(groups):
        block = digits if groups == 1 else digits[:, g * rows:(g + 1) * rows]
        part, after = _scaled_group(n, block, wq, g, scale[g], None if zero is None else zero[g], width, unit,
                                    after)
        acc = part if acc is None else acc + part
    acc = acc.reshape(3, R, N)
    y = (acc[0] + acc[1] * jnp.float32(1 / BASE) + acc[2] * jnp.float32(1 / BASE ** 2)) * m
    return y.reshape(lead + (N,)).astype(dtype)


__all__ = ["ACTIVATIONS", "TILE_ELEMENTS", "activation_digits", "qmatmul_int8dot"]
