"""How quantized weights are laid out for the device: 4-bit values two per byte, and weights split along N
into cache-sized column chunks for the chunked (CPU) QMatMul form. Host side (numpy) except
``unpack_halves``, which runs inside the traced program."""

from __future__ import annotations

import numpy as np

# Elements of one dequantized chunk: 512K floats (2 MB) fit in a core's L2 cache with room to spare.
CHUNK_ELEMENTS = 1 << 19


def packing_of(array: np.ndarray) -> str | None:
    """'int4' or 'uint4' when ``array`` holds 4-bit values that ``pack_halves`` can store, else None."""
    name = np.dtype(array.dtype).name
    return name if name in ("int4", "uint4") else None


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


def unpack_nibbles(packed, kind: str):
    """(low, high) nibbles of ``pack_halves`` bytes on the device: int8 for 'int4' (sign-extended), uint8
    for 'uint4'."""
    import jax.numpy as jnp

    if kind == "int4":
        signed = packed.astype(jnp.int8)
        return jnp.right_shift(jnp.left_shift(signed, 4), 4), jnp.right_shift(signed, 4)
    return jnp.bitwise_and(packed, 15), jnp.right_shift(packed, 4)


def unpack_halves(packed, kind: str, axis: int = -1):
    """The inverse of ``pack_halves`` on the device."""
    import jax.numpy as jnp

    return jnp.concatenate(unpack_nibbles(packed, kind), axis=axis)


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


def split_columns(array: np.ndarray, width: int) -> np.ndarray:
    """[R, N] -> [C, R, width], N zero-padded to a multiple of width."""
    rows, cols = array.shape
    count = -(-cols // width)
    padded = np.zeros((rows, count * width), dtype=array.dtype)
    padded[:, :cols] = array
    return np.ascontiguousarray(padded.reshape(rows, count, width).transpose(1, 0, 2))


__all__ = ["CHUNK_ELEMENTS", "chunk_width", "pack_halves", "packing_of", "split_columns", "unpack_halves",
           "unpack_nibbles"]
