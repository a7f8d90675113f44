"""QMatMul: ``x @ dequantize(W)`` with W read as int8/int4, in one of four forms.

- ``direct`` (GPUs, TPUs): W [K, N] as stored; the scales are applied after the dot (per output channel)
  or per block of K (partial dots [..., K/B, N], scaled, then summed), the forms XLA fuses into the
  weight read instead of materializing a float copy of W (DESIGN section 5).
- ``chunked`` (CPUs): XLA on CPU does not fuse a convert into a dot, so W is stored split along N
  (``packing.split_columns``) and a scan dequantizes one cache-sized chunk at a time.
- ``int8dot`` (CPUs): the float activations as three int8 digits and one s8 x s8 -> s32 dot against the
  int8 weight, scales after it (``digits.py``): no float copy of W, but YNNPACK's s8 dot runs at about half
  fp32's bytes per second.
- ``native`` (CPUs, the default there when it builds): portarun's XLA custom call (``native.py``), which
  widens each int8/int4 weight in registers and accumulates in float32: read once, at memory speed.

Which form a program uses is the ``quantized_matmul`` compile option ('auto' picks by device kind with
``form_for``), recorded in the executable's provenance (with ``activations_for``: how x enters the dot). All
compute the same values; tests run all four on CPUs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .packing import unpack_nibbles

FORMS = ("chunked", "direct", "int8dot", "native")


def form_for(requested: str, platform: str, native_kernel=None) -> str:
    """The QMatMul form for a device ``platform`` ('cpu', 'gpu', 'cuda', 'rocm', 'tpu'): ``requested``
    unless it is 'auto', then on CPUs ``native`` when the kernel builds here (``native_kernel``: a
    ``native.Kernel``, built on demand when None), else int8dot (the two fastest there,
    tools/bench_xla_qmatmul.py), and direct elsewhere. ValueError for an unknown form, for ``native`` off
    the CPU, and for ``native`` when the kernel does not build (with the reason)."""
    if requested not in FORMS + ("auto",):
        raise ValueError(f"quantized_matmul must be 'auto', {', '.join(repr(f) for f in FORMS)}, got {requested!r}")
    if platform != "cpu" and requested in ("auto", "native"):
        if requested == "native":
            raise ValueError(f"quantized_matmul='native' is portarun's CPU kernel; this device is {platform}")
        return "direct"
    if requested in ("auto", "native"):
        from .native import kernel

        built = native_kernel if native_kernel is not None else kernel()
        if built.available:
            return "native"
        if requested == "native":
            raise ValueError(f"quantized_matmul='native' is unavailable: {built.detail}")
        return "int8dot"
    return requested


def activations_for(form: str) -> str:
    """How a form's dot receives the float activations (provenance: never silently quantized)."""
    from .digits import ACTIVATIONS
    from .native import ACTIVATIONS as NATIVE_ACTIVATIONS

    return {"int8dot": ACTIVATIONS, "native": NATIVE_ACTIVATIONS}.get(form, "float")


def qmatmul_direct(n, x, wq, scale, zero=None):
    """``wq`` [K, N]; scale (and zero point) [N] per output channel, or [K/B, N] blocked along K.
    A zero point z contributes -(sum of x over the block) * z * scale."""
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
    """``wq`` [C, K, B] (N split into C chunks of B columns, zero-padded), scale and zero [C, G, B]
    (G = 1 per channel, K/block blocked). A scan dequantizes one chunk at a time into a small buffer
    that stays in cache and multiplies it: dequantizing the whole weight at once writes (and, for
    large weights, page-faults in) a float copy of it on every call, which made int8 decoding ~10x
    slower than fp32. Chunked, the weight is read once, as int8/int4.

    4-bit weights (``packed``) arrive as bytes [C, K/2, B]: the low nibble holds rows [0, K/2),
    the high nibble rows [K/2, K), so unpacking needs no interleave and the product is two dots.
    """
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

        if packed:
            low, high = unpack_nibbles(w, packed)
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


__all__ = ["FORMS", "activations_for", "form_for", "qmatmul_chunked", "qmatmul_direct"]
