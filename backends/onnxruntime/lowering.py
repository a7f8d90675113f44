"""Lowering of the neutral int4 artifact to ONNX Runtime's native form.

A blocked ``DequantizeLinear`` (INT4/UINT4 weight [K, N], axis 0, block size a
power of two >= 16) feeding ``MatMul`` as B becomes one ``com.microsoft``
``MatMulNBits``: B repacked as uint8 [N, k_blocks, block_size/2] (low nibble
first; signed INT4 shifted by 8, which is MatMulNBits' default zero point),
scales [N, k_blocks], zero points packed per column [N, ceil(k_blocks/2)].
ORT's optimizer does the same fusion itself at level "extended"; doing it here
makes the form explicit (and works at any optimization level), and sets the
``accuracy_level`` attribute on every lowered node.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from portarun.quantize import pack_int4

MS_DOMAIN = "com.microsoft"
_INT4 = (TensorProto.INT4, TensorProto.UINT4)


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def _int4_values(tensor: TensorProto) -> np.ndarray:
    return numpy_helper.to_array(tensor).astype(np.int16)  # ml_dtypes int4/uint4 -> plain ints


def _pack_rows(values: np.ndarray) -> np.ndarray:
    """Pack each row's 4-bit values (0..15) into bytes, low nibble first; rows padded to an even length."""
    rows, cols = values.shape
    if cols % 2:
        values = np.concatenate([values, np.zeros((rows, 1), values.dtype)], axis=1)
    return np.stack([np.frombuffer(pack_int4(row), np.uint8) for row in values]) if rows else \
        np.zeros((0, (cols + 1) // 2), np.uint8)


def lower_int4_matmuls(proto: onnx.ModelProto, accuracy_level: int | None = None) -> tuple[onnx.ModelProto, int]:
    """(copy of ``proto`` with every eligible int4 DQ+MatMul as MatMulNBits, number lowered)."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    replaced: dict[int, onnx.NodeProto] = {}  # id(MatMul) -> MatMulNBits
    dropped: set[int] = set()  # id(DQ) nodes removed
    new_inits: list[TensorProto] = []
    count = 0
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.domain not in ("", "ai.onnx"):
            continue
        weight = inits.get(node.input[0])
        block = _attr(node, "block_size", 0)
        if weight is None or weight.data_type not in _INT4 or len(weight.dims) != 2 or _attr(node, "axis", 1) != 0:
            continue
        if block < 16 or block & (block - 1):
            continue
        users = consumers.get(node.output[0], [])
        if node.output[0] in graph_outputs or not users or any(
                u.op_type != "MatMul" or u.input[1] != node.output[0] or u.input[0] == node.output[0] for u in users):
            continue
        k, n = weight.dims
        k_blocks = -(-k // block)
        signed = weight.data_type == TensorProto.INT4
        q = _int4_values(weight) + (8 if signed else 0)  # MatMulNBits stores unsigned nibbles
        padded = np.zeros((k_blocks * block, n), np.int16)
        padded[:k] = q
        packed = _pack_rows(padded.T).reshape(n, k_blocks, block // 2)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32).reshape(k_blocks, n).T
        base = f"{node.input[0]}_nbits"
        new_inits += [numpy_helper.from_array(np.ascontiguousarray(packed), f"{base}_B"),
                      numpy_helper.from_array(np.ascontiguousarray(scale), f"{base}_scales")]
        inputs = [None, f"{base}_B", f"{base}_scales"]
        if not signed:  # UINT4: explicit zero points (absent means 0 in ONNX but 8 in MatMulNBits)
            zero = (_int4_values(inits[node.input[2]]).reshape(k_blocks, n).T if len(node.input) > 2 and node.input[2]
                    else np.zeros((n, k_blocks), np.int16))
            new_inits.append(numpy_helper.from_array(_pack_rows(zero), f"{base}_zero_points"))
            inputs.append(f"{base}_zero_points")
        attrs = {"K": k, "N": n, "bits": 4, "block_size": block}
        if accuracy_level is not None:
            attrs["accuracy_level"] = int(accuracy_level)
        for user in users:
            replaced[id(user)] = helper.make_node("MatMulNBits", [user.input[0]] + inputs[1:], list(user.output),
                                                  name=f"{user.name or base}_MatMulNBits", domain=MS_DOMAIN, **attrs)
            count += 1
        dropped.add(id(node))
    if not count:
        return out, 0
    nodes = [replaced.get(id(node), node) for node in graph.node if id(node) not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    if not any(o.domain == MS_DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return out, count
