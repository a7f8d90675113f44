"""QGather: Gather(DequantizeLinear(table), ids) along axis 0, dequantizing only the gathered rows.

The quantized embedding table stays int8/int4 on the device; dequantizing all of it before the Gather
(as written) costs a full float table per call for one row per token."""

from __future__ import annotations

import jax.numpy as jnp

from .packing import unpack_halves


def qgather(n, wq, indices, scale, zero=None):
    """``mode`` 'tensor' (one scale), 'row' (scale [rows]) or 'block' (scale [rows, cols/B]); ``packed``
    when the table arrives as ``pack_halves`` bytes."""
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


__all__ = ["qgather"]
