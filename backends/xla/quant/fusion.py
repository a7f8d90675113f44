"""Graph rewrites that keep constant quantized weights int8/int4 on the device:
``DequantizeLinear(W) -> MatMul`` becomes QMatMul and ``Gather(DequantizeLinear(E), ids)`` becomes QGather.
Host side (numpy): the fused ops' functions (``matmul``, ``gather``) import JAX and run only when traced."""

from __future__ import annotations

import numpy as np

from .packing import chunk_width, pack_halves, packing_of, split_columns


def fuse_dequantize_matmul(graph, weights, constants, uses, *, form: str) -> int:
    """Replace DequantizeLinear(W const) -> MatMul(x, .) by QMatMul when the form allows it.

    ``form`` (see ``matmul.form_for``): 'chunked' stores the weight and its parameters split along N for
    ``qmatmul_chunked``; 'int8dot' stores them per block of K, signed, for ``digits.qmatmul_int8dot`` (which
    alone also takes a last block shorter than the others); 'direct' keeps them as written."""
    from .digits import qmatmul_int8dot
    from .matmul import FORMS, qmatmul_chunked, qmatmul_direct
    from .native import qmatmul_native

    if form not in FORMS:
        raise ValueError(f"unknown QMatMul form {form!r}")
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
            short_last = form in ("int8dot", "native") and K % block  # ONNX lets the last block be short
            if axis != 0 or (K % block and not short_last) or scale.shape != (-(-K // block), N):
                continue
        elif scale.ndim == 1 and scale.shape == (N,) and axis == 1:
            pass
        elif scale.size == 1:
            block = 0
        else:
            continue
        if dq.attr("output_dtype") or (form in ("int8dot", "native") and not _int8dot_fits(wq, block, form == "native")):
            continue
        node.op_type = "QMatMul"
        node.domain = "portarun.xla"
        node.fn = qmatmul_direct
        node.fold = False
        node.inputs = [node.inputs[0], w_name, scale_name] + ([zero_name] if zero_name else [])
        node.attrs = {"block_size": block, "form": form}
        if form == "chunked":
            node.fn = qmatmul_chunked
            node.inputs = _store_chunked(node, wq, scale, zero, block, weights, constants, uses)
        elif form == "int8dot":
            node.fn = qmatmul_int8dot
            node.inputs = _store_int8dot(node, wq, scale, zero, block, weights, constants, uses)
        elif form == "native":
            node.fn = qmatmul_native
            node.inputs = _store_native(node, wq, scale, zero, block, weights, constants, uses)
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
    _release(name, weights, constants, uses)
    return None


def _grid(param, groups: int, n: int) -> np.ndarray:
    """A per-tensor [] / per-channel [N] / blocked [G, N] scale or zero point as [G, N]."""
    param = np.asarray(param)
    return np.broadcast_to(param.reshape(-1)[0] if param.size == 1 else param, (groups, n))


def _store_chunked(node, wq, scale, zero, block, weights, constants, uses) -> list[str]:
    """Add the [C, K, B] weight and [C, G, B] scale/zero for ``node``; returns its new inputs."""
    K, N = wq.shape
    width = chunk_width(K, N)
    groups = K // block if block else 1

    packing = packing_of(wq) if K % 2 == 0 else None
    names = [node.inputs[0]]
    zero_grid = None if zero is None else _grid(zero, groups, N)
    for role, array in (("w", wq), ("scale", _grid(scale, groups, N)), ("zero", zero_grid)):
        if array is None:
            continue
        source = node.inputs[len(names)]
        name = f"{source}::chunks{width}"
        if name not in weights:
            chunked = split_columns(np.asarray(array), width)
            if role == "w" and packing:
                chunked = pack_halves(chunked, axis=1)
            elif role == "zero" and packing_of(chunked):
                chunked = chunked.astype(np.int8 if packing == "int4" or chunked.dtype.name == "int4" else np.uint8)
            weights[name] = chunked
        _release(source, weights, constants, uses)
        uses[name] += 1
        names.append(name)
    node.attrs.update(n=N, packed=packing)
    return names


def _four_bit_rows(tiled: bool) -> int:
    """Rows of K a 4-bit block must come in: pairs that share a byte (int8dot), quads of 4 (native,
    ``_quad_tiles``)."""
    return 4 if tiled else 2


def _int8dot_fits(wq, block: int, tiled: bool) -> bool:
    """The integer layouts take 8-bit weights and 4-bit ones whose blocks come in whole ``_four_bit_rows``
    (per channel, K is padded to them instead)."""
    return wq.dtype.name in ("int8", "uint8") or (packing_of(wq) is not None and block % _four_bit_rows(tiled) == 0)


def _store_int8dot(node, wq, scale, zero, block, weights, constants, uses) -> list[str]:
    """Add the [G, B, N] signed weight (4-bit: [G, B/2, N] ``pack_halves`` bytes of each block), [G, N]
    scale and [G, N] int8 zero point for ``qmatmul_int8dot``; returns the node's new inputs."""
    return _store_blocked(node, wq, scale, zero, block, weights, constants, uses, tiled=False)


def _store_native(node, wq, scale, zero, block, weights, constants, uses) -> list[str]:
    """The int8dot layout cut into tiles of ``native.TILE`` output columns, each tile's weight contiguous
    (N zero-padded): [T, G, B, 64] int8 (4-bit: [T, G, B/2, 64] bytes as int8 in ``_quad_tiles``' quads), scale
    [G, T * 64] float32, zero [G, T * 64] int8; for ``native.qmatmul_native``."""
    return _store_blocked(node, wq, scale, zero, block, weights, constants, uses, tiled=True)


def _tiles(array: np.ndarray) -> np.ndarray:
    """[G, S, N] -> [T, G, S, TILE] (N zero-padded to T * TILE), each tile contiguous."""
    from .native import TILE

    groups, rows, n = array.shape
    return split_columns(array.reshape(groups * rows, n), TILE).reshape(-1, groups, rows, TILE)


def _quad_tiles(offset: np.ndarray) -> np.ndarray:
    """4-bit [G, B, N] weights in offset binary (w + 8, 0..15) as the native kernel's quads: [T, G, B/2, 64]
    bytes as int8, each tile's block 128 bytes per 4 rows of K, column group c (16 columns), column i and
    pair j at byte 32 c + 2 i + j, low nibble row 4 q + j, high nibble row 4 q + 2 + j (so a zero-extension
    to 16 bits lines up the row pairs of a 16-bit dot product; see qmatmul_kernel.cc). N is zero-padded."""
    from .native import TILE

    groups, rows, n = offset.shape
    tiles = -(-n // TILE)
    padded = np.zeros((groups, rows, tiles * TILE), np.uint8)
    padded[:, :, :n] = offset
    quads = padded.reshape(groups, rows // 4, 4, tiles, 4, TILE // 4)  # [G, Q, row in quad, T, c, i]
    pairs = quads[:, :, 0:2] | (quads[:, :, 2:4] << 4)  # [G, Q, j, T, c, i]
    return np.ascontiguousarray(pairs.transpose(3, 0, 1, 4, 5, 2)).reshape(tiles, groups, rows // 2, TILE).view(np.int8)


def _padded_columns(grid: np.ndarray) -> np.ndarray:
    from .native import TILE

    padded = np.zeros((grid.shape[0], -(-grid.shape[1] // TILE) * TILE), grid.dtype)
    padded[:, :grid.shape[1]] = grid
    return padded


def _store_blocked(node, wq, scale, zero, block, weights, constants, uses, *, tiled: bool) -> list[str]:
    """The signed per-block layout both integer forms read. Unsigned weights are stored shifted to signed
    (u - 128, u4 - 8) with the zero point shifted alike, so one signed kernel serves all; an unsigned
    weight without a zero point gets one (-128 / -8)."""
    K, N = wq.shape
    bits = 4 if packing_of(wq) else 8
    offset = 0 if wq.dtype.name in ("int8", "int4") else 1 << (bits - 1)
    unit = _four_bit_rows(tiled) if bits == 4 else 1  # 4-bit per channel: K padded to whole units
    rows = block or -(-K // unit) * unit
    groups = -(-K // rows)

    signed = np.zeros((groups * rows, N), np.int16)
    signed[:K] = np.asarray(wq).astype(np.int16) - offset
    signed = signed.reshape(groups, rows, N)
    zero_grid = np.zeros((groups, N), np.int16) if zero is None else _grid(zero, groups, N).astype(np.int16)
    shifted_zero = zero_grid - offset
    if bits == 8:
        w = _tiles(signed.astype(np.int8)) if tiled else signed.astype(np.int8)
    else:  # native: the kernel's quads of w + 8 (0..15), made from the signed values directly
        w = _quad_tiles(signed + 8) if tiled else pack_halves(signed, axis=1)
    stored = {
        "w": w,
        "scale": np.ascontiguousarray(_grid(scale, groups, N), dtype=np.float32 if tiled else None),
        "zero": shifted_zero.astype(np.int8) if shifted_zero.any() else None,
    }
    if tiled:
        stored["scale"] = _padded_columns(stored["scale"])
        stored["zero"] = None if stored["zero"] is None else _padded_columns(stored["zero"])
    suffix = "native" if tiled else "int8dot"
    names = [node.inputs[0]]
    sources = {"w": node.inputs[1], "scale": node.inputs[2], "zero": node.inputs[3] if len(node.inputs) > 3 else None}
    for role, array in stored.items():
        source = sources[role]
        if array is None:
            if source is not None:
                _release(source, weights, constants, uses)
            continue
        # an unsigned weight without zero point gets one: named after the weight
        name = f"{source or sources['w'] + '::zero'}::{suffix}"
        if name not in weights:
            weights[name] = array
        if source is not None:
            _release(source, weights, constants, uses)
        uses[name] += 1
        names.append(name)
    node.attrs.update(n=N, k=K, packed="int4" if bits == 4 else None, block=rows)
    return names


def _release(name, weights, constants, uses) -> None:
    """One use of ``name`` fewer; the array goes once nothing uses it."""
    uses[name] -= 1
    if uses[name] <= 0:
        weights.pop(name, None)
        constants.pop(name, None)


def fuse_dequantize_gather(graph, weights, constants, uses, *, pack: bool = False) -> int:
    """Replace Gather(DequantizeLinear(W const 2-D), ids) along axis 0 by QGather.

    ``pack`` (CPUs): a 4-bit table is stored as bytes (``pack_halves``) and unpacked per gathered row."""
    from .gather import qgather

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
        packing = packing_of(wq)
        if pack and packing and cols % 2 == 0 and uses[w_name] == 1 and w_name in weights:
            packed_name = f"{w_name}::packed"
            weights[packed_name] = pack_halves(wq, axis=1)
            del weights[w_name]
            node.inputs[0] = packed_name
            node.attrs["packed"] = packing
            if zero is not None and packing_of(zero):
                widened = f"{zero_name}::wide"
                (weights if zero_name in weights else constants)[widened] = zero.astype(
                    np.int8 if packing == "int4" else np.uint8)
                node.inputs[3] = widened
        remove.add(id(dq))
        fused += 1
    if remove:
        graph.nodes = [nd for nd in graph.nodes if id(nd) not in remove]
    return fused


__all__ = ["fuse_dequantize_gather", "fuse_dequantize_matmul"]
