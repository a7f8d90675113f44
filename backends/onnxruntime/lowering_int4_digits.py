"""int4 MatMulNBits with float activations at the speed of ORT's int8-activation kernel: two digits.

MLAS runs a 4-bit ``MatMulNBits`` with float activations (accuracy level 0/1) by widening every weight to
fp32 and FMAs: on a 2-core AVX-512 EPYC that reads the weights at 3-7 GB/s, compute-bound. Its accuracy
level 4 kernel (int8 x int4 dot products, VNNI where there is one) is 2x faster, but it quantizes the
activation to int8 per block of K -- a different precision, never applied silently.

This lowering gives the level-4 kernel an activation it represents exactly, plus the rounding error, as
two rows of one call (the weights are still read once):

    per block of ``block_size`` along K:  s = max|x| / 127           (what MLAS itself takes as the scale)
    a = DequantizeLinear(QuantizeLinear(x, s))  -- on s's int8 grid, max |a| = 127 s: MLAS re-quantizes it
                                                   to the same integers (its scale is s to within an ulp)
    b = x - a                                   -- |b| <= s / 2; MLAS quantizes it with its own scale
    y = MatMulNBits_level4([a; b]) summed over the two rows   (+ 0 * sum(x): NaN/Inf in x reach y)

The error left is b's own rounding, <= max|b| / 254 <= max|x| / 64,516 (~2^-16 of the block's max),
against ~2^-8 for one int8 digit and ~2^-4 for the int4 weights themselves. A block of zeros has s = 0:
QuantizeLinear's q is then multiplied by 0, so a = b = 0. ORT's MaxPool and ReduceMax skip NaN, so NaN
or Inf in x are carried to y by the ``0 * sum(x)`` term instead. Two forms take the block max: where
shape inference knows x is 3- to 5-D, MaxPool in x's own shape (10 ops per activation, 2 per MatMul);
otherwise a rank-free [-1, block] view of x, reshaped back to [2, *x.shape] (13 and 2). A K its block
size does not divide stays at the exact level. All ops but MatMulNBits are standard ONNX at opset 21
(blocked QuantizeLinear, its output_dtype), the opset an int4 model has anyway.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from portarun.plugin import onnx_domain, opset_versions

from .lowering import MS_DOMAIN, _attr, replace_nodes
from .lowering_int8 import _Builder

FORM = "matmulnbits-2digits"
DIGITS_FORM = "2 int8 digits per block"
ACTIVATIONS = f"float ({DIGITS_FORM})"
ACCURACY_LEVEL = 4  # MLAS's int8-activation kernel, fed the digits
MIN_OPSET = 21  # QuantizeLinear/DequantizeLinear with block_size, QuantizeLinear's output_dtype
MAX_POOLED_RANK = 5  # MaxPool over the last axis: ORT pools 1 to 3 spatial axes
SMALL_INITIALIZER = 1024  # elements: axes and shapes shape inference must read; weights are larger


def activation_ranks(proto: onnx.ModelProto) -> dict[str, int]:
    """The rank of every value shape inference knows in ``proto``'s main graph. It reads a model built of the
    graph's nodes without its large initializers (weights become graph inputs of the same shape; axes and
    shapes keep their values), so no weight bytes are copied."""
    graph = proto.graph
    small = [t for t in graph.initializer if np.prod(t.dims, dtype=np.int64) <= SMALL_INITIALIZER]
    weights = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
               for t in graph.initializer if np.prod(t.dims, dtype=np.int64) > SMALL_INITIALIZER]
    light = helper.make_model(helper.make_graph(graph.node, graph.name, list(graph.input) + weights, graph.output,
                                                small, value_info=graph.value_info),
                              opset_imports=proto.opset_import, ir_version=proto.ir_version)
    light.functions.extend(proto.functions)
    try:
        inferred = onnx.shape_inference.infer_shapes(light)
    except Exception:  # noqa: BLE001 - ranks are a hint: without them every MatMul takes the rank-free form
        return {}
    return {info.name: len(info.type.tensor_type.shape.dim)
            for info in list(inferred.graph.value_info) + list(inferred.graph.input)
            if info.type.tensor_type.HasField("shape")}


def _pooled_digits(b: _Builder, x: str, rank: int, block: int) -> tuple[list[onnx.NodeProto], str, str]:
    """(nodes, x's two digits stacked on axis 0 as [2 * x.shape[0], ...], the 0 * sum(x) term [..., 1]) for
    an activation of known rank 3 to 5: MaxPool over the last axis takes the block max in x's own shape."""
    nodes: list[onnx.NodeProto] = []
    window = [1] * (rank - 3) + [block]
    magnitude = b.node(nodes, "Abs", [x], f"{x}_abs")
    block_max = b.node(nodes, "MaxPool", [magnitude], f"{x}_block_max", kernel_shape=window, strides=window)
    high, low = _grid_split(b, nodes, x, block_max, x, axis=-1, block_size=block)
    stacked = b.node(nodes, "Concat", [high, low], f"{x}_digits", axis=0)
    return nodes, stacked, _poison(b, nodes, x)


def _grid_split(b: _Builder, nodes: list, values: str, block_max: str, x: str, **quantize) -> tuple[str, str]:
    """(values on the int8 grid of s = block max / 127, the rest): QuantizeLinear/DequantizeLinear with
    ``quantize``'s axis (and block size) between ``values`` and s's shapes."""
    s = b.node(nodes, "Mul", [block_max, b.const(1.0 / 127.0, np.float32, "digits_inv127")], f"{x}_digit_scale")
    q = b.node(nodes, "QuantizeLinear", [values, s], f"{x}_digit_q", output_dtype=TensorProto.INT8, **quantize)
    high = b.node(nodes, "DequantizeLinear", [q, s], f"{x}_digit_high", **quantize)
    return high, b.node(nodes, "Sub", [values, high], f"{x}_digit_low")


def _poison(b: _Builder, nodes: list, x: str) -> str:
    total = b.reduce(nodes, "ReduceSum", x, -1, 1, f"{x}_sum")
    return b.node(nodes, "Mul", [total, b.const(0.0, np.float32, "digits_zero")], f"{x}_nonfinite")


def _flat_digits(b: _Builder, x: str, block: int) -> tuple[list[onnx.NodeProto], str, str]:
    """(nodes, x's two digits stacked as [2, *x.shape], the 0 * sum(x) term [..., 1]) for an activation of
    any rank: the blocks are quantized in a [-1, block] view of x and the digits reshaped back."""
    nodes: list[onnx.NodeProto] = []
    i64 = np.int64
    blocks = b.node(nodes, "Reshape", [x, b.const([-1, block], i64, "digits_block_shape")], f"{x}_blocks")
    magnitude = b.node(nodes, "Abs", [blocks], f"{x}_blocks_abs")
    block_max = b.reduce(nodes, "ReduceMax", magnitude, -1, 0, f"{x}_block_max")  # [rows * K / block]
    high, low = _grid_split(b, nodes, blocks, block_max, x, axis=0)
    both = b.node(nodes, "Concat", [high, low], f"{x}_digit_blocks", axis=0)
    shape = b.node(nodes, "Shape", [x], f"{x}_shape")
    stacked_shape = b.node(nodes, "Concat", [b.const([2], i64, "digits_two"), shape], f"{x}_digits_shape", axis=0)
    stacked = b.node(nodes, "Reshape", [both, stacked_shape], f"{x}_digits")
    return nodes, stacked, _poison(b, nodes, x)


def _digit_matmul(b: _Builder, node: onnx.NodeProto, stacked: str, poison: str, pooled: bool) -> list:
    """The MatMulNBits node on the stacked digits at accuracy level 4, its two halves summed with the poison:
    halves of axis 0 (pooled: [2B, ...]) or the two entries of the leading digit axis ([2, ...])."""
    nodes: list[onnx.NodeProto] = []
    out = node.output[0]
    rewritten = onnx.NodeProto()
    rewritten.CopyFrom(node)
    rewritten.input[0] = stacked
    rewritten.output[0] = b.name(f"{out}_digit_rows")
    for attribute in [a for a in rewritten.attribute if a.name == "accuracy_level"]:
        rewritten.attribute.remove(attribute)
    rewritten.attribute.append(helper.make_attribute("accuracy_level", ACCURACY_LEVEL))
    nodes.append(rewritten)
    if pooled:
        high, low = b.name(f"{out}_digit_high_rows"), b.name(f"{out}_digit_low_rows")
        nodes.append(helper.make_node("Split", [rewritten.output[0]], [high, low], name=f"{out}_digit_split",
                                      axis=0, num_outputs=2))
        nodes.append(helper.make_node("Sum", [high, low, poison], [out], name=f"{out}_digit_sum"))
        return nodes
    summed = b.reduce(nodes, "ReduceSum", rewritten.output[0], 0, 0, f"{out}_digit_sum")
    nodes.append(helper.make_node("Add", [summed, poison], [out], name=f"{out}_digit_nonfinite"))
    return nodes


def split_int4_activations(proto: onnx.ModelProto, ranks: dict[str, int]) -> tuple[int, int]:
    """Rewrite ``proto`` in place: every 4-bit MatMulNBits of the main graph whose K its block size divides
    runs at accuracy level 4 over its activation's two digits, pooled where ``ranks`` (from
    ``activation_ranks`` of the model before lowering) knows the activation is 3- to 5-D. Returns
    (rewritten, left at their level)."""
    graph = proto.graph
    candidates = [n for n in graph.node if _is_int4_matmul(n)]
    if opset_versions(proto.opset_import).get("", 0) < MIN_OPSET:
        return 0, len(candidates)
    b = _Builder(graph, MIN_OPSET)
    nodes: list[onnx.NodeProto] = []
    digits_of: dict[tuple[str, int], tuple[str, str, bool]] = {}  # (activation, block) -> digits, made once
    rewritten = 0
    for node in graph.node:
        block = _attr(node, "block_size", 0) if _is_int4_matmul(node) else 0
        if not block or _attr(node, "K", 0) % block:
            nodes.append(node)  # not ours, or a short last block: neither form cuts it like MLAS does
            continue
        x = node.input[0]
        if (x, block) not in digits_of:
            pooled = 3 <= ranks.get(x, 0) <= MAX_POOLED_RANK
            made, stacked, poison = _pooled_digits(b, x, ranks[x], block) if pooled else _flat_digits(b, x, block)
            nodes += made
            digits_of[(x, block)] = (stacked, poison, pooled)
        nodes += _digit_matmul(b, node, *digits_of[(x, block)])
        rewritten += 1
    if rewritten:
        replace_nodes(graph, nodes, b.inits)
    return rewritten, len(candidates) - rewritten


def _is_int4_matmul(node: onnx.NodeProto) -> bool:
    return node.op_type == "MatMulNBits" and onnx_domain(node.domain) == MS_DOMAIN and _attr(node, "bits", 4) == 4
