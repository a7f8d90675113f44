"""Graph rewriting: which nodes carry quantizable weights, and the QDQ model for a given plan.

A *plan* maps each weight-carrying node to a level: ``int4`` (blocked
DequantizeLinear on the weight), ``int8`` (per-channel DequantizeLinear on the
weight), ``int8+act`` (that, plus a QuantizeLinear/DequantizeLinear pair on the
activation input: static int8), or ``float``. Building is a pure function of
the float model, the plan and the activation ranges, so the accuracy search
can rebuild any mix cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import ModelError, first_line
from ..model import onnx_domain, opset_versions
from ..model_checks import used_names
from .numerics import QuantizedTensor, activation_params, pack_int4, quantize_blocked_int4, quantize_per_channel_int8

# one step toward float for each level (the sensitivity fallback ladder)
DEMOTE = {"int4": "int8", "int8+act": "int8", "int8": "float"}
# int8 needs per-axis DequantizeLinear (13); 19 is the oldest the onnx reference evaluator implements
INT4_OPSET, INT8_OPSET = 21, 19
HELD_BYTES = 1 << 12  # float initializers at least this large cross the version converter without their bytes
IR_FOR_OPSET = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10, 22: 10, 23: 11, 24: 11, 25: 12}


@dataclass(frozen=True)
class Target:
    """A node whose weight input can be quantized."""

    node: str
    op: str
    index: int  # position of the node in the graph it was found in (ordering only; build matches ``output``)
    weight: str  # initializer name
    weight_input: int  # which input of the node is the weight
    channel_axis: int  # per-channel int8 scales run along this axis (output channels)
    block_axis: int  # int4 blocks run along this axis (the reduction axis)
    activation: str | None  # the float activation input, for static int8 (None: not quantizable)
    output: str = ""  # the node's first output: identifies it across opset conversion (indices shift)
    indices: str | None = None  # Gather: the ids input (its local error is measured on the rows it reads)


@dataclass
class Options:
    block_size: int = 128
    symmetric: bool = True
    act_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    # quantized weights by (weight, form, axis): the accuracy search rebuilds the model many times
    cache: dict[tuple[str, str, int], QuantizedTensor] = field(default_factory=dict)


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def find_targets(proto: onnx.ModelProto) -> list[Target]:
    """MatMul / Gemm / Conv with a constant weight, and Gather from a constant 2-D table (embeddings)."""
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer if t.data_type in (TensorProto.FLOAT,)}
    graph_inputs = {vi.name for vi in graph.input}
    targets = []
    for index, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{index}"
        ins = list(node.input)
        if onnx_domain(node.domain):
            continue
        if node.op_type == "MatMul" and len(ins) == 2 and ins[1] in inits and len(inits[ins[1]].dims) == 2 \
                and ins[1] not in graph_inputs:
            targets.append(Target(name, "MatMul", index, ins[1], 1, 1, 0, ins[0] if ins[0] not in inits else None,
                                  node.output[0]))
        elif node.op_type == "Gemm" and len(ins) >= 2 and ins[1] in inits and ins[1] not in graph_inputs:
            trans_b = _attr(node, "transB", 0)
            act = ins[0] if ins[0] not in inits and not _attr(node, "transA", 0) else None
            targets.append(Target(name, "Gemm", index, ins[1], 1, 0 if trans_b else 1, 1 if trans_b else 0, act,
                                  node.output[0]))
        elif node.op_type == "Conv" and len(ins) >= 2 and ins[1] in inits and ins[1] not in graph_inputs:
            targets.append(Target(name, "Conv", index, ins[1], 1, 0, 1, ins[0] if ins[0] not in inits else None,
                                  node.output[0]))
        elif node.op_type == "Gather" and len(ins) == 2 and ins[0] in inits and len(inits[ins[0]].dims) == 2 \
                and _attr(node, "axis", 0) == 0 and ins[0] not in graph_inputs:
            targets.append(Target(name, "Gather", index, ins[0], 0, 0, 1, None, node.output[0], ins[1]))
    return targets


def needed_opset(levels: dict[str, str]) -> int:
    if any(level == "int4" for level in levels.values()):
        return INT4_OPSET
    return INT8_OPSET


def upgrade_opset(proto: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """The model at standard opset >= ``opset`` (onnx.version_converter), IR version raised to match."""
    current = opset_versions(proto.opset_import).get("", 0)
    if current >= opset:
        return proto
    from onnx import version_converter

    # The converter round-trips the whole model through C++ (decoder-small: 400 MB serialized, parsed,
    # rebuilt, serialized and parsed back). It adapts nodes, never a float weight's values, so it gets a
    # copy of the model whose large float initializers have no bytes; they are filled in afterwards, by name.
    light, held = _without_weight_bytes(proto)
    try:
        converted = version_converter.convert_version(light, opset)
    except Exception as exc:  # the converter raises bare RuntimeErrors for ops it cannot adapt
        text = first_line(exc)
        raise ModelError(f"cannot upgrade '{proto.graph.name}' from opset {current} to {opset} "
                         f"(needed for {'int4 DequantizeLinear' if opset >= INT4_OPSET else 'per-channel QDQ'}): "
                         f"{text}", hint="re-export the model at opset 21, or quantize to int8 instead") from None
    for init in converted.graph.initializer:
        source = held.get(init.name)
        if source is not None and not init.raw_data and init.data_type == source.data_type:
            init.raw_data = source.raw_data
    converted.ir_version = max(converted.ir_version, IR_FOR_OPSET.get(opset, onnx.IR_VERSION))
    return converted


def _copy_fields(source, target, skip: str = "") -> None:
    """Every set field of protobuf message ``source`` into ``target``, except the one named ``skip``."""
    for field, value in source.ListFields():
        if field.name == skip:
            continue
        # protobuf >= 5 names it is_repeated (and drops label); older ones only have label
        repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
        if repeated:
            getattr(target, field.name).extend(value)
        elif field.message_type is not None:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)


def copy_without_initializers(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``proto`` with an empty initializer list: the caller adds the ones it keeps (copying a
    400 MB model whole, to drop most of its weights next, cost a second and as much memory again)."""
    out = onnx.ModelProto()
    _copy_fields(proto, out, skip="graph")
    _copy_fields(proto.graph, out.graph, skip="initializer")
    return out


def _without_weight_bytes(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, TensorProto]]:
    """A copy of ``proto`` whose large raw float initializers are bytes-less (name, type and dims kept),
    and those initializers of ``proto`` by name. ``proto`` itself is not touched."""
    light = copy_without_initializers(proto)
    held: dict[str, TensorProto] = {}
    for init in proto.graph.initializer:
        if init.data_type == TensorProto.FLOAT and len(init.raw_data) >= HELD_BYTES:
            held[init.name] = init
            light.graph.initializer.add(name=init.name, data_type=init.data_type, dims=init.dims)
        else:
            light.graph.initializer.add().CopyFrom(init)
    return light, held


# ops whose int4 weights ONNX Runtime lowers to MatMulNBits / GatherBlockQuantized (power-of-two blocks >= 16)
LOWERABLE_OPS = ("MatMul", "Gather")


def portable_block_size(length: int, requested: int, op: str = "MatMul") -> int:
    """The block size to use along a reduction axis of ``length`` for a weight of an ``op`` node.

    The ONNX spec allows a short last block, but OpenVINO 2026.4's ONNX frontend refuses a blocked
    DequantizeLinear whose axis is not a multiple of the block size ("Conversion is failed for:
    DequantizeLinear-21"; e.g. a first Conv's 3 input channels with block 128), while ONNX Runtime's
    MatMulNBits wants a power of two >= 16 (and takes a short last block). So, in order:

    1. the largest of requested, requested/2, ... 16 that divides ``length`` (every backend, MatMulNBits);
    2. ``length`` itself when it is under 16 (one block spans the axis; too short for MatMulNBits anyway);
    3. for ops ONNX Runtime does not lower (Conv, Gemm): the largest divisor of ``length`` in [16, requested];
    4. ``requested``, a short last block: spec-valid, ONNX Runtime (MatMulNBits included) and the
       reference run it; OpenVINO refuses it, and its ``supports`` names the node.
    """
    size = requested
    while size >= 16:
        if length % size == 0:
            return size
        size //= 2
    if length < 16:
        return max(length, 2)  # numerics wants blocks of >= 2
    if op not in LOWERABLE_OPS:
        divisor = next((d for d in range(requested, 15, -1) if length % d == 0), None)
        if divisor:
            return divisor
    return requested


def quantized_weight(target: Target, weight: np.ndarray, level: str, opts: Options) -> QuantizedTensor:
    """``target``'s weight quantized for ``level`` (int4 blocks along the reduction axis, or int8 per output
    channel), computed once per (weight, form, axis) and kept in ``opts.cache``."""
    form = "int4" if level == "int4" else "int8"
    key = (target.weight, form, target.block_axis if form == "int4" else target.channel_axis)
    if key not in opts.cache:
        if form == "int4":
            block = portable_block_size(weight.shape[target.block_axis], opts.block_size, target.op)
            opts.cache[key] = quantize_blocked_int4(weight, target.block_axis, block, symmetric=opts.symmetric)
        else:
            opts.cache[key] = quantize_per_channel_int8(weight, target.channel_axis)
    return opts.cache[key]


def activation_qdq(tensor: str, lo: float, hi: float) -> tuple[str, list[onnx.NodeProto], list[TensorProto]]:
    """QuantizeLinear/DequantizeLinear of ``tensor`` for its calibrated range: (DQ output, nodes, scale and
    zero point initializers). The artifact and the search's session (swap.py) both write it here."""
    scale, zero = activation_params(lo, hi)
    base = f"{tensor}_act"
    inits = [numpy_helper.from_array(np.array(scale, np.float32), f"{base}_scale"),
             numpy_helper.from_array(np.array(zero, np.uint8), f"{base}_zero")]
    nodes = [helper.make_node("QuantizeLinear", [tensor, f"{base}_scale", f"{base}_zero"], [f"{base}_q"],
                              name=f"{base}_QuantizeLinear"),
             helper.make_node("DequantizeLinear", [f"{base}_q", f"{base}_scale", f"{base}_zero"], [f"{base}_dq"],
                              name=f"{base}_DequantizeLinear")]
    return f"{base}_dq", nodes, inits


def _int4_proto(name: str, values: np.ndarray, signed: bool) -> TensorProto:
    return helper.make_tensor(name, TensorProto.INT4 if signed else TensorProto.UINT4, list(values.shape),
                              vals=pack_int4(values), raw=True)


def build(proto: onnx.ModelProto, targets: list[Target], levels: dict[str, str], opts: Options) -> onnx.ModelProto:
    """The QDQ model for ``levels`` (node name -> level; absent means float). ``proto`` is not modified."""
    out = copy_without_initializers(proto)  # the weights are read from proto; only the kept ones are copied
    graph = out.graph
    inits = {t.name: t for t in proto.graph.initializer}
    # by first output, not position: positions shift when an opset conversion inserts nodes
    by_output = {t.output: t for t in targets if levels.get(t.node, "float") != "float"}
    new_inits: list[TensorProto] = []
    weight_cache: dict[tuple[str, str, int], str] = {}  # (weight, level, axis) -> DQ output name
    act_cache: dict[str, str] = {}  # activation tensor -> its DQ output
    new_nodes: list[onnx.NodeProto] = []
    consumed_weights: set[str] = set()

    def weight_dq(t: Target, level: str) -> tuple[str, list[onnx.NodeProto]]:
        axis = t.block_axis if level == "int4" else t.channel_axis
        key = (t.weight, "int4" if level == "int4" else "int8", axis)
        if key in weight_cache:
            return weight_cache[key], []
        q = opts.cache.get(key)
        if q is None:
            q = quantized_weight(t, numpy_helper.to_array(inits[t.weight]), level, opts)
        base = f"{t.weight}_{key[1]}"
        if q.bits == 4:
            new_inits.append(_int4_proto(f"{base}_q", q.values, q.signed))
        else:
            new_inits.append(numpy_helper.from_array(q.values, f"{base}_q"))
        new_inits.append(numpy_helper.from_array(q.scale.astype(np.float32), f"{base}_scale"))
        dq_inputs = [f"{base}_q", f"{base}_scale"]
        if q.zero_point is not None:
            if q.bits == 4:
                new_inits.append(_int4_proto(f"{base}_zero", q.zero_point, q.signed))
            else:
                new_inits.append(numpy_helper.from_array(q.zero_point, f"{base}_zero"))
            dq_inputs.append(f"{base}_zero")
        attrs = {"axis": q.axis}
        if q.block_size:
            attrs["block_size"] = q.block_size
        output = f"{base}_dq"
        node = helper.make_node("DequantizeLinear", dq_inputs, [output], name=f"{base}_DequantizeLinear", **attrs)
        weight_cache[key] = output
        return output, [node]

    def act_qdq(tensor: str) -> tuple[str, list[onnx.NodeProto]]:
        if tensor in act_cache:
            return act_cache[tensor], []
        dq_out, nodes, scales = activation_qdq(tensor, *opts.act_ranges[tensor])
        new_inits.extend(scales)
        act_cache[tensor] = dq_out
        return dq_out, nodes

    for node in graph.node:
        t = by_output.get(node.output[0]) if node.output else None
        if t is None:
            new_nodes.append(node)
            continue
        level = levels[t.node]
        rewritten = onnx.NodeProto()
        rewritten.CopyFrom(node)
        dq_name, dq_nodes = weight_dq(t, level)
        new_nodes.extend(dq_nodes)
        rewritten.input[t.weight_input] = dq_name
        consumed_weights.add(t.weight)
        if level == "int8+act" and t.activation is not None and t.activation in opts.act_ranges:
            act_name, act_nodes = act_qdq(t.activation)
            new_nodes.extend(act_nodes)
            rewritten.input[list(node.input).index(t.activation)] = act_name
        new_nodes.append(rewritten)

    rewritten_graph = onnx.GraphProto()
    rewritten_graph.node.extend(new_nodes)
    still_used = used_names(rewritten_graph) | {o.name for o in graph.output}  # subgraphs read outer names too
    kept = [init for init in proto.graph.initializer if init.name not in consumed_weights or init.name in still_used]
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    # value_info of replaced weights is stale; shape inference recomputes what it needs
    del graph.value_info[:]
    return out
