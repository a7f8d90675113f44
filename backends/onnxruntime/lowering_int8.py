"""int8 weight-only MatMuls with float activations as ONE integer matmul over the activations' int8 digits.

ORT has no fast kernel for an int8 weight with float activations (8-bit MatMulNBits at accuracy levels
0-3 runs a generic path 50-100x slower than a fp32 MatMul), so a per-channel int8 weight
``DequantizeLinear -> MatMul`` (or ``Gemm`` with ``transB=1``) becomes standard ONNX ops:

    per row of x (last axis K): s = max|x| (+ 2^-100: an all-zero row stays finite), r = x * 63 / s in [-63, 63]
    d_j = round(r * 128^j) - 128 * round(r * 128^(j-1))   (j = 0, 1, 2; exact power-of-two scalings)
    x ~= s / 63 * (d0 + d1 / 128 + d2 / 128**2) = s / 63 * round(r * 128**2) / 128**2
                                                error <= s / 63 / 2 / 128**2 (~2^-21 of the row's max)
    Y = MatMulInteger(uint8(d + 64) [..., 3, K], W int8 [K, N], a_zero_point=64 [, W's zero points])
    y = s * sum_j Y[..., j, :] * scale / (63 * 128**j)                          (+ Gemm's C)

The weight is read once, as int8, by MLAS's u8 x s8 integer GEMM (measured 48 us vs 288 us for a fp32
MatMul at M=3, 768x2048). Base 128 keeps the uint8 digits in [0, 128], so an AVX2 ``vpmaddubsw`` pair peaks at
2 * 128 * 128 = 32,768 in magnitude (32,512 positive): no int16 saturation on non-VNNI CPUs (ORT warns
that u8s8 with full-range u8 saturates there). int32 accumulation is exact for K < 262,144. This is not
activation quantization: the digits carry the fp32 activation to ~2^-21 of its row's max. NaN and Inf
make s NaN (max|x| plus 0 * sum|x|), which multiplies last: the row's outputs are NaN. The digits of one
activation are computed once for every MatMul that reads it (Q/K/V, gate/up). All ops are standard ONNX
at the model's opset (>= 13): 14 per activation, 5 per MatMul.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from portarun.plugin import onnx_domain, opset_versions

from .lowering import _constant_dequantize, _weight_user, graph_index, replace_nodes

BASE = 128
DIGITS = 3
ROW_MAX = 63  # |d0| <= 63; |d1|, |d2| <= 64: as uint8 with zero point 64 they lie in [0, 128]
ZERO_POINT = 64
FORM = "matmulinteger-digits"
DIGITS_FORM = f"{DIGITS} int8 digits, base {BASE}"
ACTIVATIONS = f"float ({DIGITS_FORM})"  # provenance: float-accurate activations, carried as digits
TINY = 2.0 ** -100
MIN_OPSET = 13  # Unsqueeze/ReduceSum axes as inputs


def _int8_weight(node: onnx.NodeProto, inits: dict[str, TensorProto], transposed: bool):
    """(int8 weight [K, N], float32 scale [N], int8 zero points [N] or None) of a per-channel (or per-tensor)
    int8 DequantizeLinear whose output channel is N, or None. ``transposed``: the weight is Gemm's W [N, K]."""
    operands = _constant_dequantize(node, inits)
    if operands is None:
        return None
    weight, scale, zero, axis, block = operands
    if weight.data_type != TensorProto.INT8 or block or inits[node.input[1]].data_type != TensorProto.FLOAT:
        return None
    q = numpy_helper.to_array(weight)
    if transposed:
        q = q.T
    n = q.shape[1]
    channel_axis = 0 if transposed else 1
    if scale.size == 1:  # per-tensor: the same number in every column
        scale = np.full(n, scale.reshape(()), np.float32)
    elif scale.shape != (n,) or axis not in (channel_axis, channel_axis - 2):
        return None
    zp = None
    if zero is not None:
        zp = numpy_helper.to_array(zero).astype(np.int8).reshape(-1)
        if zp.size == 1:
            zp = np.full(n, zp[0], np.int8)
        if zp.shape != (n,) or zero.data_type != TensorProto.INT8:
            return None
        if not zp.any():
            zp = None
    return np.ascontiguousarray(q), scale, zp


class _Builder:
    """Emits nodes and initializers with unique names derived from the graph's."""

    def __init__(self, graph: onnx.GraphProto, opset: int):
        self.opset = opset
        self.taken = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output} \
            | {i.name for i in graph.input}
        self.inits: list[TensorProto] = []
        self._consts: dict[tuple, str] = {}

    def name(self, base: str) -> str:
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name

    def init(self, array: np.ndarray, base: str) -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, value, dtype, base: str) -> str:
        """A small shared constant (one initializer per value)."""
        array = np.asarray(value, dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            self._consts[key] = self.init(array, base)
        return self._consts[key]

    def node(self, nodes: list, op: str, inputs: list[str], base: str, **attrs) -> str:
        out = self.name(base)
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def reduce(self, nodes: list, op: str, x: str, axis: int, keepdims: int, base: str) -> str:
        """ReduceMax / ReduceSum over one axis, axes as an attribute or an input as the opset wants."""
        axes_as_input = op == "ReduceSum" or self.opset >= 18
        if axes_as_input:
            return self.node(nodes, op, [x, self.const([axis], np.int64, "digits_axis")], base, keepdims=keepdims)
        return self.node(nodes, op, [x], base, axes=[axis], keepdims=keepdims)


def _digits(b: _Builder, x: str) -> tuple[list[onnx.NodeProto], str, str]:
    """Nodes computing (uint8 digits [..., 3, K], row max s [..., 1]) of float activation ``x``: digit j of a
    row stands for s / 63 / 128**j; 1 / (63 * 128**j) lives in the weight's column scales."""
    nodes: list[onnx.NodeProto] = []
    f32 = np.float32
    magnitude = b.node(nodes, "Abs", [x], f"{x}_abs")
    row_max = b.reduce(nodes, "ReduceMax", magnitude, -1, 1, f"{x}_absmax")
    # ORT's ReduceMax drops a NaN that is not the row's first element; a sum never does (NaN or Inf in the
    # row make it NaN or Inf, times 0 is NaN): added to the max, it carries them into s. TINY keeps an
    # all-zero row finite (s = TINY, digits 0); it moves s only for rows below 2^-76.
    poison = b.node(nodes, "Mul", [b.reduce(nodes, "ReduceSum", magnitude, -1, 1, f"{x}_abssum"),
                                   b.const(0.0, f32, "digits_zero")], f"{x}_nonfinite")
    s = b.node(nodes, "Sum", [row_max, poison, b.const(TINY, f32, "digits_tiny")], f"{x}_rowmax")  # [..., 1]
    inv = b.node(nodes, "Div", [b.const(float(ROW_MAX), f32, "digits_row_max"), s], f"{x}_inv")
    r = b.node(nodes, "Mul", [x, inv], f"{x}_scaled")  # |r| <= 63
    r = b.node(nodes, "Unsqueeze", [r, b.const([-2], np.int64, "digits_axis")], f"{x}_scaled_row")  # [..., 1, K]
    # hi_j = r * 128^j and lo_j = round(r * 128^(j-1)) (0 for j = 0) are exact power-of-two scalings, so
    # hi_j - 128 lo_j is exact, |.| <= 64, and rounds to digit j; the digits telescope to round(r * 128^2) / 128^2
    powers = BASE ** np.arange(DIGITS, dtype=np.float64)
    hi = b.node(nodes, "Mul", [r, b.const(powers[:, None], f32, "digits_powers")], f"{x}_hi")
    lo = b.node(nodes, "Mul", [r, b.const(np.r_[0, powers[:-1]][:, None], f32, "digits_powers_below")], f"{x}_lo")
    lo = b.node(nodes, "Round", [lo], f"{x}_lo_rounded")
    lo = b.node(nodes, "Mul", [lo, b.const(float(BASE), f32, "digits_base")], f"{x}_carry")
    rest = b.node(nodes, "Sub", [hi, lo], f"{x}_rest")
    # QuantizeLinear(scale 1, zero point 64): round half to even (like Round), + 64, as uint8 in [0, 128]
    digits = b.node(nodes, "QuantizeLinear", [rest, b.const(1.0, f32, "digits_one"),
                                              b.const(np.uint8(ZERO_POINT), np.uint8, "digits_a_zero_point")],
                    f"{x}_digits_u8")
    return nodes, digits, s


def _digit_matmul(b: _Builder, user: onnx.NodeProto, digits: str, row_max: str, weight: tuple, names: dict) -> list:
    """Nodes for one MatMul/Gemm user: MatMulInteger over the digits, weighted per digit and column, summed
    over the digits, times the row max (+ Gemm's C)."""
    q, scale, zp = weight
    nodes: list[onnx.NodeProto] = []
    inputs = [digits, names["q"], b.const(np.uint8(ZERO_POINT), np.uint8, "digits_a_zero_point")]
    if zp is not None:
        inputs.append(names["zp"])
    out = user.output[0]
    acc = b.node(nodes, "MatMulInteger", inputs, f"{out}_digits_int")  # [..., 3, N] int32, exact
    # (Cast + Mul, not DequantizeLinear: ORT's per-axis int32 DequantizeLinear is 4x slower at prefill)
    acc = b.node(nodes, "Cast", [acc], f"{out}_digits_float", to=TensorProto.FLOAT)
    acc = b.node(nodes, "Mul", [acc, names["scale"]], f"{out}_digits_weighted")  # scale[n] / (63 * 128**j)
    summed = b.reduce(nodes, "ReduceSum", acc, -2, 0, f"{out}_digits_sum")
    bias = user.input[2] if user.op_type == "Gemm" and len(user.input) > 2 and user.input[2] else None
    product = b.name(f"{out}_nobias") if bias else out
    # the row max multiplies last: NaN in it (the row had NaN or Inf) makes the row's outputs NaN
    nodes.append(helper.make_node("Mul", [summed, row_max], [product], name=f"{user.name or out}_digits_rowmax"))
    if bias:
        nodes.append(helper.make_node("Add", [product, bias], [out], name=f"{user.name or out}_bias"))
    return nodes


def lower_int8_digit_matmuls(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """(copy of ``proto`` with every per-channel int8 weight DQ -> MatMul / Gemm(transB) as the digits
    subgraph, number of MatMuls lowered). Embedding Gathers and everything else are left as they are."""
    opset = opset_versions(proto.opset_import).get("", 0)
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    if opset < MIN_OPSET:
        return out, 0
    graph = out.graph
    inits, consumers, keep = graph_index(graph)
    b = _Builder(graph, opset)
    weight_of: dict[int, tuple] = {}  # id(user) -> (weight, initializer names)
    dropped: set[int] = set()
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or onnx_domain(node.domain):
            continue
        users = consumers.get(node.output[0], [])
        kinds = {_weight_user(u, node.output[0]) for u in users}
        if not users or len(kinds) != 1 or None in kinds:
            continue
        weight = _int8_weight(node, inits, transposed=kinds == {"Gemm"})
        if weight is None:
            continue
        q, scale, zp = weight
        base = node.input[0]
        names = {"q": b.init(q, f"{base}_digits_w"),
                 "scale": b.init((scale[None, :] / (ROW_MAX * BASE ** np.arange(DIGITS, dtype=np.float64)[:, None]))
                                 .astype(np.float32), f"{base}_digits_scale")}
        if zp is not None:
            names["zp"] = b.init(zp, f"{base}_digits_zero_point")
        for user in users:
            weight_of[id(user)] = (weight, names)
        if node.output[0] not in keep:  # a branch reading the dequantized weight keeps its DequantizeLinear
            dropped.add(id(node))
    if not weight_of:
        return out, 0
    nodes: list[onnx.NodeProto] = []
    digits_of: dict[str, tuple[str, str]] = {}  # activation -> (digits, m), made before its first reader
    for node in graph.node:
        if id(node) in dropped:
            continue
        if id(node) not in weight_of:
            nodes.append(node)
            continue
        x = node.input[0]
        if x not in digits_of:
            made, digits, m = _digits(b, x)
            nodes += made
            digits_of[x] = (digits, m)
        nodes += _digit_matmul(b, node, *digits_of[x], *weight_of[id(node)])
    replace_nodes(graph, nodes, b.inits)
    return out, len(weight_of)
