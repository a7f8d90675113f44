"""Lowering of the neutral quantized artifact to ONNX Runtime's native ``MatMulNBits``.

Two forms of weight ``DequantizeLinear`` feeding ``MatMul`` as B (weight [K, N]) become one
``com.microsoft`` ``MatMulNBits`` each:

* int4: blocked INT4/UINT4 DQ (axis 0, block size a power of two >= 16);
* int8: per-channel INT8 DQ (axis 1, one scale per output column, zero point 0). MatMulNBits
  has no per-channel mode, so the column's scale is repeated in every block of 128 along K,
  which represents the same numbers exactly.

An embedding table's DequantizeLinear feeding ``Gather`` (axis 0) becomes ``GatherBlockQuantized``
(int8 per row, or int4 blocks along the row), so only the gathered rows are dequantized instead
of the whole table on every run.

B is repacked as uint8 [N, k_blocks, block_size * bits / 8] (4-bit: low nibble first); signed
values are shifted to unsigned (+8 / +128), which is MatMulNBits' default zero point; UINT4 zero
points are packed per column [N, ceil(k_blocks / 2)]. Every lowered node gets ``accuracy_level``.
ORT 1.32's optimizer fuses both forms itself at level "extended" and above; lowering here makes
the form explicit, independent of the optimization level and of ORT's fusion rules.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from portarun.plugin import iter_graphs, onnx_domain, used_names

MS_DOMAIN = "com.microsoft"
_INT4 = (TensorProto.INT4, TensorProto.UINT4)
INT8_BLOCK = 128


def subgraph_reads(graph: onnx.GraphProto) -> set[str]:
    """Names that If/Loop/Scan bodies inside ``graph`` read (from their own scope or the outer one)."""
    names: set[str] = set()
    for body in iter_graphs(graph):
        if body is not graph:
            for node in body.node:
                names.update(node.input)
    return names


def graph_index(graph: onnx.GraphProto) -> tuple[dict[str, TensorProto], dict[str, list[onnx.NodeProto]], set[str]]:
    """(initializers by name, each name's main-graph readers, names a DequantizeLinear producing them must keep:
    the graph's outputs and what If/Loop bodies read, since a lowering rewrites only main-graph readers)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    keep = {o.name for o in graph.output} | subgraph_reads(graph)
    return {t.name: t for t in graph.initializer}, consumers, keep


def replace_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto], new_inits: list[TensorProto]) -> None:
    """Make ``nodes`` the graph's nodes and keep the initializers (old and ``new_inits``) something still reads."""
    del graph.node[:]
    graph.node.extend(nodes)
    used = used_names(graph)  # If/Loop bodies read outer initializers by name (silero-vad's LSTM weights)
    kept = [t for t in list(graph.initializer) + new_inits if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def _ints(tensor: TensorProto) -> np.ndarray:
    return numpy_helper.to_array(tensor).astype(np.int16)  # ml_dtypes int4/uint4, int8 -> plain ints


def _pack_rows(values: np.ndarray) -> np.ndarray:
    """Pack each row's 4-bit values (0..15) into bytes, low nibble first; rows padded to an even length.
    (Vectorized: a row-by-row loop took seconds on a 32000-row lm_head at every compile.)"""
    rows, cols = values.shape
    if cols % 2:
        values = np.concatenate([values, np.zeros((rows, 1), values.dtype)], axis=1)
    nibbles = (np.asarray(values) & 0x0F).astype(np.uint8)
    return np.ascontiguousarray(nibbles[:, 0::2] | (nibbles[:, 1::2] << 4))


def _constant_dequantize(node: onnx.NodeProto, inits: dict[str, TensorProto]):
    """(2-D weight, float32 scale, zero point or None, axis, block_size) of a DequantizeLinear whose
    operands are all initializers, or None."""
    weight = inits.get(node.input[0])
    if weight is None or len(weight.dims) != 2 or node.input[1] not in inits:
        return None
    zero = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if len(node.input) > 2 and node.input[2] and zero is None:
        return None
    scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
    return weight, scale, zero, _attr(node, "axis", 1), _attr(node, "block_size", 0)


def _form(node: onnx.NodeProto, inits: dict[str, TensorProto], bits: tuple[int, ...]):
    """(bits, block, unsigned q [K, N], scales [k_blocks, N], unsigned zero points [k_blocks, N] or None),
    or None when this DequantizeLinear is not a form MatMulNBits can take."""
    operands = _constant_dequantize(node, inits)
    if operands is None:
        return None
    weight, scale, zero, axis, block = operands
    k, n = weight.dims
    if 4 in bits and weight.data_type in _INT4 and axis == 0 and block >= 16 and not block & (block - 1):
        k_blocks = -(-k // block)
        signed = weight.data_type == TensorProto.INT4
        q = _ints(weight) + (8 if signed else 0)
        if signed:
            if zero is not None and _ints(zero).any():
                return None  # signed INT4 with non-zero zero points: no MatMulNBits equivalent
            zp = None
        else:  # UINT4: ONNX's absent zero point is 0, MatMulNBits' is 8: always pass it
            zp = _ints(zero) if zero is not None else np.zeros((k_blocks, n), np.int16)
        return 4, block, q, scale.reshape(k_blocks, n), zp
    if 8 in bits and weight.data_type == TensorProto.INT8 and axis in (1, -1) and not block:
        if zero is not None and _ints(zero).any():
            return None  # asymmetric int8 weights are not what portarun writes; leave them alone
        block = INT8_BLOCK
        k_blocks = -(-k // block)
        scales = np.broadcast_to(scale.reshape(1, n), (k_blocks, n))
        return 8, block, _ints(weight) + 128, scales, None
    return None


def _weight_user(user: onnx.NodeProto, weight: str) -> str | None:
    """'MatMul' (weight as B), 'Gemm' (B with transB=1, transA=0, alpha = beta = 1: y = A @ W.T + C), or None."""
    if user.input[0] == weight or len(user.input) < 2 or user.input[1] != weight or onnx_domain(user.domain):
        return None
    if user.op_type == "MatMul":
        return "MatMul"
    floats = {a.name: a.f for a in user.attribute if a.type == onnx.AttributeProto.FLOAT}
    if user.op_type == "Gemm" and _attr(user, "transB", 0) == 1 and _attr(user, "transA", 0) == 0 \
            and floats.get("alpha", 1.0) == 1.0 and floats.get("beta", 1.0) == 1.0:
        return "Gemm"
    return None


def _transposed_form(node: onnx.NodeProto, inits: dict[str, TensorProto], bits: tuple[int, ...]):
    """``_form`` for a Gemm's transB weight W [N, K]: int4 blocked along K (axis 1) or int8 per output row
    (axis 0), returned in ``_form``'s [K, N] orientation."""
    operands = _constant_dequantize(node, inits)
    if operands is None:
        return None
    weight, scale, zero, axis, block = operands
    n, k = weight.dims
    if 4 in bits and weight.data_type in _INT4 and axis in (1, -1) and block >= 16 and not block & (block - 1):
        signed = weight.data_type == TensorProto.INT4
        if signed and zero is not None and _ints(zero).any():
            return None
        k_blocks = -(-k // block)
        q = (_ints(weight) + (8 if signed else 0)).T
        zp = None if signed else (_ints(zero) if zero is not None else np.zeros((n, k_blocks), np.int16)).T
        return 4, block, q, scale.reshape(n, k_blocks).T, zp
    if 8 in bits and weight.data_type == TensorProto.INT8 and axis == 0 and not block:
        if zero is not None and _ints(zero).any():
            return None
        k_blocks = -(-k // INT8_BLOCK)
        return 8, INT8_BLOCK, (_ints(weight) + 128).T, np.broadcast_to(scale.reshape(1, n), (k_blocks, n)), None
    return None


def _gather_form(node: onnx.NodeProto, inits: dict[str, TensorProto], bits: tuple[int, ...]):
    """(bits, block, unsigned q [V, H], scales [V, n_blocks], unsigned zero points [V, n_blocks]) for an
    embedding table dequantized per row (int8, axis 0) or in blocks along H (int4, axis 1), or None."""
    operands = _constant_dequantize(node, inits)
    if operands is None:
        return None
    weight, scale, zero, axis, block = operands
    v, h = weight.dims
    if 4 in bits and weight.data_type in _INT4 and axis in (1, -1) and block >= 16 and not block & (block - 1):
        signed = weight.data_type == TensorProto.INT4
        n_blocks = -(-h // block)
        zp = _ints(zero) if zero is not None else np.zeros((v, n_blocks), np.int16)
        shift = 8 if signed else 0
        return 4, block, _ints(weight) + shift, scale.reshape(v, n_blocks), zp + shift
    if 8 in bits and weight.data_type == TensorProto.INT8 and axis == 0 and not block:
        block = next((b for b in (128, 64, 32, 16) if h % b == 0), INT8_BLOCK)
        n_blocks = -(-h // block)
        zp = _ints(zero) if zero is not None else np.zeros(v, np.int16)
        return (8, block, _ints(weight) + 128, np.repeat(scale.reshape(v, 1), n_blocks, 1),
                np.repeat((zp + 128).reshape(v, 1), n_blocks, 1))
    return None


def _gather_block_quantized(node: onnx.NodeProto, users: list[onnx.NodeProto], form, new_inits: list,
                            replaced: dict) -> int:
    nbits, block, q, scales, zp = form
    v, h = q.shape
    base = f"{node.input[0]}_gbq"
    n_blocks = scales.shape[1]
    padded = np.zeros((v, n_blocks * block), np.int16)
    padded[:, :h] = q
    if nbits == 4:
        data, zero = _pack_rows(padded[:, :h]), _pack_rows(zp)
    else:
        data, zero = q.astype(np.uint8), zp.astype(np.uint8)
    new_inits += [numpy_helper.from_array(np.ascontiguousarray(data), f"{base}_data"),
                  numpy_helper.from_array(np.ascontiguousarray(scales), f"{base}_scales"),
                  numpy_helper.from_array(np.ascontiguousarray(zero), f"{base}_zero_points")]
    for user in users:
        replaced[id(user)] = [helper.make_node(
            "GatherBlockQuantized", [f"{base}_data", user.input[1], f"{base}_scales", f"{base}_zero_points"],
            list(user.output), name=f"{user.name or base}_GatherBlockQuantized", domain=MS_DOMAIN,
            gather_axis=0, quantize_axis=1, block_size=block, bits=nbits)]
    return len(users)


def lower_weight_matmuls(proto: onnx.ModelProto, accuracy_level: int | None = None,
                         bits: tuple[int, ...] = (4,),
                         gather_bits: tuple[int, ...] | None = None, *,
                         copy: bool = True) -> tuple[onnx.ModelProto, int]:
    """(copy of ``proto`` with eligible DQ+MatMul pairs of the given ``bits`` as MatMulNBits and DQ+Gather
    pairs of ``gather_bits`` (default: ``bits``) as GatherBlockQuantized, number lowered). ``copy=False``
    rewrites ``proto`` itself (a caller's own fresh copy: a second copy of the weights is not needed)."""
    gather_bits = bits if gather_bits is None else gather_bits
    out = proto
    if copy:
        out = onnx.ModelProto()
        out.CopyFrom(proto)
    graph = out.graph
    inits, consumers, keep = graph_index(graph)
    replaced: dict[int, list[onnx.NodeProto]] = {}  # id(MatMul or Gemm) -> MatMulNBits (+ Add of Gemm's C)
    dropped: set[int] = set()  # id(DQ) nodes removed
    new_inits: list[TensorProto] = []
    count = 0
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or onnx_domain(node.domain):
            continue
        users = consumers.get(node.output[0], [])
        if node.output[0] in keep or not users:
            continue
        if all(u.op_type == "Gather" and u.input[0] == node.output[0] and _attr(u, "axis", 0) == 0 for u in users):
            gather = _gather_form(node, inits, gather_bits)
            if gather is not None:
                count += _gather_block_quantized(node, users, gather, new_inits, replaced)
                dropped.add(id(node))
            continue
        kinds = {_weight_user(u, node.output[0]) for u in users}
        if len(kinds) != 1 or None in kinds:
            continue
        form = _form(node, inits, bits) if kinds == {"MatMul"} else _transposed_form(node, inits, bits)
        if form is None:
            continue
        nbits, block, q, scales, zp = form
        k, n = q.shape
        k_blocks = scales.shape[0]
        padded = np.zeros((k_blocks * block, n), np.int16)
        padded[:k] = q
        if nbits == 4:
            packed = _pack_rows(padded.T).reshape(n, k_blocks, block // 2)
        else:
            packed = padded.T.astype(np.uint8).reshape(n, k_blocks, block)
        base = f"{node.input[0]}_nbits"
        new_inits += [numpy_helper.from_array(np.ascontiguousarray(packed), f"{base}_B"),
                      numpy_helper.from_array(np.ascontiguousarray(scales.T), f"{base}_scales")]
        inputs = [f"{base}_B", f"{base}_scales"]
        if zp is not None:
            new_inits.append(numpy_helper.from_array(_pack_rows(np.ascontiguousarray(zp.T)), f"{base}_zero_points"))
            inputs.append(f"{base}_zero_points")
        attrs = {"K": k, "N": n, "bits": nbits, "block_size": block}
        if accuracy_level is not None:
            attrs["accuracy_level"] = int(accuracy_level)
        for user in users:
            name = f"{user.name or base}_MatMulNBits"
            bias = user.input[2] if user.op_type == "Gemm" and len(user.input) > 2 and user.input[2] else None
            product = f"{user.output[0]}_nobias" if bias else user.output[0]
            replaced[id(user)] = [helper.make_node("MatMulNBits", [user.input[0]] + inputs, [product], name=name,
                                                   domain=MS_DOMAIN, **attrs)]
            if bias:  # Gemm's C: added after (MatMulNBits' own bias input is newer than some ORT builds)
                replaced[id(user)].append(helper.make_node("Add", [product, bias], list(user.output),
                                                           name=f"{name}_bias"))
            count += 1
        dropped.add(id(node))
    if not count:
        return out, 0
    replace_nodes(graph, [new for node in graph.node if id(node) not in dropped
                          for new in replaced.get(id(node), [node])], new_inits)
    if not any(o.domain == MS_DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return out, count


def lower_int4_matmuls(proto: onnx.ModelProto, accuracy_level: int | None = None) -> tuple[onnx.ModelProto, int]:
    """Blocked int4 DQ+MatMul -> MatMulNBits (bits 4)."""
    return lower_weight_matmuls(proto, accuracy_level, bits=(4,))
