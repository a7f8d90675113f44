"""The arithmetic of quantization, in NumPy: no graphs here.

Per-channel int8 (symmetric, for weights), blocked int4 (symmetric INT4 or
asymmetric UINT4 with zero points, blocks along one axis as opset-21
``DequantizeLinear`` defines them), activation scales for uint8, and the
4-bit packing ONNX uses (two values per byte, the first in the low nibble).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INT8_MAX = 127  # symmetric: -127..127, so -128 never appears (VNNI u8*s8 sums stay in range)


@dataclass(frozen=True)
class QuantizedTensor:
    """``values`` (int8/uint8 numbers, 4-bit ones unpacked), ``scale`` and ``zero_point`` shaped for
    ``DequantizeLinear`` along ``axis`` (``block_size`` 0: per-channel), and the ONNX element type."""

    values: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray | None
    axis: int
    block_size: int
    bits: int
    signed: bool

    def dequantize(self) -> np.ndarray:
        return dequantize(self)


def quantize_per_channel_int8(weight: np.ndarray, axis: int) -> QuantizedTensor:
    """Symmetric int8 with one scale per slice along ``axis`` (zero point 0)."""
    w = np.asarray(weight, dtype=np.float32)
    axis = axis % w.ndim
    reduce = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.max(np.abs(w), axis=reduce) if reduce else np.abs(w)
    scale = np.where(amax > 0, amax / INT8_MAX, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -INT8_MAX, INT8_MAX).astype(np.int8)
    return QuantizedTensor(q, scale, np.zeros(scale.shape, np.int8), axis, 0, 8, True)


def _blocks(w: np.ndarray, axis: int, block_size: int) -> tuple[np.ndarray, int]:
    """``w`` moved so ``axis`` is last and padded with zeros to whole blocks: [..., n_blocks, block_size]."""
    moved = np.moveaxis(w, axis, -1)
    length = moved.shape[-1]
    n_blocks = -(-length // block_size)
    pad = n_blocks * block_size - length
    if pad:
        moved = np.concatenate([moved, np.zeros(moved.shape[:-1] + (pad,), moved.dtype)], axis=-1)
    return moved.reshape(moved.shape[:-1] + (n_blocks, block_size)), length


def quantize_blocked_int4(weight: np.ndarray, axis: int, block_size: int, *, symmetric: bool = True) -> QuantizedTensor:
    """4-bit blocks of ``block_size`` consecutive elements along ``axis`` (the last block may be short).

    Symmetric: INT4 in [-8, 7], no zero point, the scale chosen so the block's most
    negative and most positive values both fit. Asymmetric: UINT4 in [0, 15] with a
    zero point per block; the range always includes 0 so zeros stay exact.
    """
    if block_size < 2:
        raise ValueError(f"block_size must be at least 2, got {block_size}")
    w = np.asarray(weight, dtype=np.float32)
    axis = axis % w.ndim
    blocks, length = _blocks(w, axis, block_size)
    if symmetric:
        hi = np.max(blocks, axis=-1)
        lo = np.min(blocks, axis=-1)
        scale = np.maximum(np.maximum(hi, 0) / 7.0, np.maximum(-lo, 0) / 8.0)
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        q = np.clip(np.rint(blocks / scale[..., None]), -8, 7).astype(np.int8)
        zero = None
    else:
        lo = np.minimum(np.min(blocks, axis=-1), 0.0)
        hi = np.maximum(np.max(blocks, axis=-1), 0.0)
        scale = np.where(hi > lo, (hi - lo) / 15.0, 1.0).astype(np.float32)
        zero = np.clip(np.rint(-lo / scale), 0, 15).astype(np.uint8)
        q = np.clip(np.rint(blocks / scale[..., None]) + zero[..., None], 0, 15).astype(np.uint8)
    q = q.reshape(q.shape[:-2] + (-1,))[..., :length]
    values = np.ascontiguousarray(np.moveaxis(q, -1, axis))
    # scale [..., n_blocks] back to the weight's layout with axis holding n_blocks
    scale = np.ascontiguousarray(np.moveaxis(scale, -1, axis))
    if zero is not None:
        zero = np.ascontiguousarray(np.moveaxis(zero, -1, axis))
    return QuantizedTensor(values, scale, zero, axis, block_size, 4, symmetric)


def dequantize(q: QuantizedTensor) -> np.ndarray:
    """What ``DequantizeLinear`` computes for ``q`` (float32), per-channel or blocked."""
    values = q.values.astype(np.float32)
    scale = q.scale.astype(np.float32)
    zero = q.zero_point.astype(np.float32) if q.zero_point is not None else np.zeros_like(scale)
    if q.block_size:
        # the same elementwise (values - zero) * scale, on a [..., n_blocks, block] view broadcast against
        # [..., n_blocks, 1] instead of repeated scales (np.take over a range was most of the time)
        moved = np.moveaxis(values, q.axis, -1)
        length = moved.shape[-1]
        blocks = scale.shape[q.axis]
        padded = blocks * q.block_size
        if padded != length:
            moved = np.concatenate([moved, np.zeros(moved.shape[:-1] + (padded - length,), np.float32)], axis=-1)
        grouped = moved.reshape(moved.shape[:-1] + (blocks, q.block_size))
        s = np.moveaxis(scale, q.axis, -1)[..., None]
        z = np.moveaxis(zero, q.axis, -1)[..., None]
        out = ((grouped - z) * s).astype(np.float32).reshape(moved.shape)[..., :length]
        return np.ascontiguousarray(np.moveaxis(out, -1, q.axis))
    else:
        shape = [1] * values.ndim
        shape[q.axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((values - zero) * scale).astype(np.float32)


def pack_int4(values: np.ndarray) -> bytes:
    """ONNX 4-bit packing of ``values`` (int in [-8, 7] or [0, 15]), flattened row-major:
    element 2i in the low nibble of byte i, element 2i+1 in the high nibble; an odd
    count leaves the last high nibble zero."""
    flat = np.asarray(values).astype(np.int16).ravel()
    if flat.size and (flat.min() < -8 or flat.max() > 15):
        raise ValueError("int4 values must lie in [-8, 7] (signed) or [0, 15] (unsigned)")
    nibbles = (flat & 0x0F).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.concatenate([nibbles, np.zeros(1, np.uint8)])
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8).tobytes()


def unpack_int4(data: bytes, count: int, *, signed: bool) -> np.ndarray:
    """Inverse of ``pack_int4``: ``count`` values as int8 (signed) or uint8."""
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size * 2 < count:
        raise ValueError(f"{raw.size} bytes hold at most {raw.size * 2} int4 values, asked for {count}")
    nibbles = np.empty(raw.size * 2, np.uint8)
    nibbles[0::2] = raw & 0x0F
    nibbles[1::2] = raw >> 4
    nibbles = nibbles[:count]
    if signed:
        return np.where(nibbles > 7, nibbles.astype(np.int16) - 16, nibbles).astype(np.int8)
    return nibbles


def activation_params(lo: float, hi: float) -> tuple[np.float32, np.uint8]:
    """uint8 scale and zero point for a float range; the range is widened to include 0."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-12:
        return np.float32(1.0), np.uint8(0)
    scale = (hi - lo) / 255.0
    zero = int(np.clip(np.rint(-lo / scale), 0, 255))
    return np.float32(scale), np.uint8(zero)
