"""The arithmetic of quantization, in NumPy: no graphs here.

Per-channel int8 (symmetric, for weights), blocked int4 (symmetric INT4 or
asymmetric UINT4 with zero points, blocks along one axis as opset-21
``DequantizeLinear`` defines them), activation scales for uint8, and the
4-bit packing ONNX uses (two values per byte, the first in the low nibble).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PIECE = 1 << 18  # elements (1 MB of float32) per piece when a whole weight's temporaries would not fit in cache
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
    # max |w| as max(max w, -min w): the same numbers without a weight-sized temporary
    amax = np.maximum(np.max(w, axis=reduce), -np.min(w, axis=reduce)) if reduce else np.abs(w)
    scale = np.where(amax > 0, amax / INT8_MAX, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = w / scale.reshape(shape)
    np.rint(q, out=q)
    q = np.clip(q, -INT8_MAX, INT8_MAX, out=q).astype(np.int8)
    return QuantizedTensor(q, scale, np.zeros(scale.shape, np.int8), axis, 0, 8, True)


def _blocks(w: np.ndarray, axis: int, block_size: int) -> tuple[np.ndarray, int]:
    """``w`` padded with zeros along ``axis`` to whole blocks and split there, in place (no transpose):
    shape[:axis] + (n_blocks, block_size) + shape[axis + 1:]; and the axis' original length."""
    length = w.shape[axis]
    n_blocks = -(-length // block_size)
    pad = n_blocks * block_size - length
    if pad:
        widths = [(0, 0)] * w.ndim
        widths[axis] = (0, pad)
        w = np.pad(w, widths)
    return w.reshape(w.shape[:axis] + (n_blocks, block_size) + w.shape[axis + 1:]), length


def _unblock(blocks: np.ndarray, axis: int, length: int) -> np.ndarray:
    """Inverse of ``_blocks``: the blocks merged back along ``axis`` and cut to ``length``."""
    merged = blocks.reshape(blocks.shape[:axis] + (-1,) + blocks.shape[axis + 2:])
    if merged.shape[axis] != length:
        merged = np.ascontiguousarray(merged[(slice(None),) * axis + (slice(0, length),)])
    return merged


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
    # [outer, block, inner] (a view): the scales are [outer, inner], one per block; worked through in
    # cache-sized pieces (whole-weight float temporaries, page-faulted afresh, took most of the time)
    outer, inner = int(np.prod(blocks.shape[:axis + 1])), int(np.prod(blocks.shape[axis + 2:]))
    cube = blocks.reshape(outer, block_size, inner)
    values = np.empty(cube.shape, np.int8 if symmetric else np.uint8)
    scale = np.empty((outer, inner), np.float32)
    zero = None if symmetric else np.empty((outer, inner), np.uint8)
    step_inner = min(inner, max(1, PIECE // block_size))
    step_outer = max(1, PIECE // (block_size * step_inner))
    for o in range(0, outer, step_outer):
        for i in range(0, inner, step_inner):
            part = cube[o:o + step_outer, :, i:i + step_inner]
            hi, lo = np.max(part, axis=1), np.min(part, axis=1)
            if symmetric:  # the scale that fits both the most negative (-8) and most positive (7) value
                s = np.maximum(np.maximum(hi, 0) / 7.0, np.maximum(-lo, 0) / 8.0)
                s = np.where(s > 0, s, 1.0).astype(np.float32)
            else:  # the range always includes 0 so zeros stay exact
                lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
                s = np.where(hi > lo, (hi - lo) / 15.0, 1.0).astype(np.float32)
                z = np.clip(np.rint(-lo / s), 0, 15).astype(np.uint8)
                zero[o:o + step_outer, i:i + step_inner] = z
            scale[o:o + step_outer, i:i + step_inner] = s
            q = part / s[:, None, :]
            np.rint(q, out=q)
            if not symmetric:
                q += z[:, None, :]
            np.clip(q, -8 if symmetric else 0, 7 if symmetric else 15, out=q)
            values[o:o + step_outer, :, i:i + step_inner] = q  # the same cast astype makes
    layout = blocks.shape[:axis + 1] + blocks.shape[axis + 2:]  # the weight's, n_blocks at axis
    return QuantizedTensor(_unblock(values.reshape(blocks.shape), axis, length), scale.reshape(layout),
                           None if zero is None else zero.reshape(layout), axis, block_size, 4, symmetric)


def dequantize(q: QuantizedTensor) -> np.ndarray:
    """What ``DequantizeLinear`` computes for ``q`` (float32), per-channel or blocked."""
    values = q.values.astype(np.float32)
    scale = q.scale.astype(np.float32, copy=False)
    zero = q.zero_point.astype(np.float32) if q.zero_point is not None else None
    if q.block_size:
        # the same elementwise (values - zero) * scale, computed in place on the blocks (split along the
        # axis, no transpose) broadcast against one scale per block: np.take over repeated scales and
        # fresh 100 MB temporaries were most of the time
        blocks, length = _blocks(values, q.axis, q.block_size)
        if zero is not None:
            blocks -= np.expand_dims(zero, q.axis + 1)
        blocks *= np.expand_dims(scale, q.axis + 1)
        return _unblock(blocks, q.axis, length)
    shape = [1] * values.ndim
    shape[q.axis] = -1
    if zero is not None:
        values -= zero.reshape(shape)
    values *= scale.reshape(shape)
    return values


def pack_int4(values: np.ndarray) -> bytes:
    """ONNX 4-bit packing of ``values`` (int in [-8, 7] or [0, 15]), flattened row-major:
    element 2i in the low nibble of byte i, element 2i+1 in the high nibble; an odd
    count leaves the last high nibble zero."""
    flat = np.asarray(values).ravel()
    if flat.size and (flat.min() < -8 or flat.max() > 15):
        raise ValueError("int4 values must lie in [-8, 7] (signed) or [0, 15] (unsigned)")
    if flat.dtype in (np.int8, np.uint8):  # the low nibble of the byte itself (two's complement for int8)
        nibbles = flat.view(np.uint8) & np.uint8(0x0F)
    else:
        nibbles = (flat.astype(np.int16) & 0x0F).astype(np.uint8)
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
