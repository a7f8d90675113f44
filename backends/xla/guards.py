"""Cheap checks before lowering, for legal graphs on which XLA kills the process or runs for ever.

XLA on CPU aborts (SIGSEGV/SIGABRT, not a Python exception) on a ``Sum`` with 30,000 inputs
or a ``Tile`` whose static extent product overflows, and spends minutes on a huge ``Pad``.
Those are refused here as a ``CompileError`` naming the node, before JAX traces anything:

- arity: a node with more than ``MAX_INPUTS`` inputs (XLA builds one deep expression tree);
- size: an output whose element count is known before running — from the graph's declared and
  inferred shapes, or from the constant operand of Tile / Expand / Pad / ConstantOfShape /
  Resize — and whose bytes exceed this machine's memory (or overflow int64 outright).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from portarun.plugin import CompileError

# XLA CPU crashed at 30,000 inputs; real models stay far below this (a wide Concat has hundreds).
MAX_INPUTS = 4096
INT64_MAX = 2**63 - 1
HINT = "the graph asks for more than this machine can hold; check the op's constant operands or run it on " \
       "another backend"


def memory_bytes() -> int:
    """Physical memory of this machine (the bound on any one tensor)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 2**40


def check(proto: onnx.ModelProto, model_name: str, *, limit: int | None = None) -> None:
    """Raise CompileError for the first node XLA cannot be trusted with."""
    limit = memory_bytes() if limit is None else limit
    shapes = _inferred_shapes(proto)
    for graph_nodes, constants in _graphs(proto):
        for node in graph_nodes:
            _check_node(node, constants, shapes, limit, model_name)


def _graphs(proto: onnx.ModelProto) -> Iterator[tuple[list[onnx.NodeProto], dict[str, np.ndarray]]]:
    """(nodes, small integer constants visible to them) for the main graph, subgraphs and functions."""
    bodies: list[tuple[Any, dict]] = [(proto.graph, {})]
    bodies += [(function, {}) for function in proto.functions]
    while bodies:
        body, outer = bodies.pop()
        constants = dict(outer)
        for tensor in getattr(body, "initializer", ()):
            _keep(constants, tensor.name, tensor)
        nodes = list(body.node)
        for node in nodes:
            if node.op_type == "Constant" and node.output:
                for attr in node.attribute:
                    if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                        _keep(constants, node.output[0], attr.t)
                    elif attr.name in ("value_ints", "value_int"):
                        constants[node.output[0]] = np.array(list(attr.ints) or [attr.i], np.int64)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    bodies.append((attr.g, constants))
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    bodies += [(g, constants) for g in attr.graphs]
        yield nodes, constants


def _keep(constants: dict, name: str, tensor: onnx.TensorProto) -> None:
    count = 1
    for dim in tensor.dims:
        count *= dim
    if count <= 64 and tensor.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32,
                                            onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
        try:
            constants[name] = numpy_helper.to_array(tensor)
        except Exception:  # an unreadable constant: the op check below just does not see it
            pass


def _inferred_shapes(proto: onnx.ModelProto) -> dict[str, tuple[tuple[int | None, ...], int]]:
    """name -> (dims, element type) from declared and inferred shapes; {} when inference fails."""
    infos = list(proto.graph.input) + list(proto.graph.output) + list(proto.graph.value_info)
    try:
        inferred = onnx.shape_inference.infer_shapes(_skeleton(proto), data_prop=True)
        infos += list(inferred.graph.value_info) + list(inferred.graph.output)
    except Exception:  # inference is a help here, not a gate: the model was validated on load
        pass
    shapes = {}
    for info in infos:
        tensor_type = info.type.tensor_type
        if info.type.HasField("tensor_type") and tensor_type.HasField("shape"):
            dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                         for d in tensor_type.shape.dim)
            shapes[info.name] = (dims, tensor_type.elem_type)
    return shapes


def _skeleton(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model without its big weights (declared as inputs of the same type and shape instead):
    shape inference needs only small constants, and copying a 400 MB model costs seconds."""
    skeleton = onnx.ModelProto(ir_version=proto.ir_version, opset_import=proto.opset_import,
                               functions=proto.functions)
    graph = proto.graph
    skeleton.graph.name = graph.name
    skeleton.graph.node.extend(graph.node)
    skeleton.graph.input.extend(graph.input)
    skeleton.graph.output.extend(graph.output)
    skeleton.graph.value_info.extend(graph.value_info)
    declared = {info.name for info in graph.input}
    for tensor in graph.initializer:
        count = 1
        for dim in tensor.dims:
            count *= dim
        if count <= 64:
            skeleton.graph.initializer.append(tensor)
        elif tensor.name not in declared:
            skeleton.graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type,
                                                                           list(tensor.dims)))
    return skeleton


def _itemsize(elem_type: int) -> int:
    try:
        return max(1, onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize)
    except Exception:
        return 4


def _describe(node: onnx.NodeProto) -> str:
    return f"{node.op_type} node '{node.name}'" if node.name else f"{node.op_type} node (output '{node.output[0]}')" \
        if node.output else f"{node.op_type} node"


def _check_node(node: onnx.NodeProto, constants: dict, shapes: dict, limit: int, model_name: str) -> None:
    if len(node.input) > MAX_INPUTS:
        raise CompileError(f"xla refuses '{model_name}': {_describe(node)} has {len(node.input):,} inputs "
                           f"(more than {MAX_INPUTS:,} crash XLA's compiler)", backend="xla",
                           hint="split it into a tree of smaller nodes, or run it on onnxruntime:cpu")
    for output in node.output:
        if output in shapes:
            dims, elem_type = shapes[output]
            _check_size(node, output, [d or 1 for d in dims], _itemsize(elem_type), limit, model_name)
    extent = _constant_extent(node, constants, shapes)
    if extent is not None and node.output:
        elem_type = shapes.get(node.input[0], ((), onnx.TensorProto.FLOAT))[1] if node.input else 1
        _check_size(node, node.output[0], extent, _itemsize(elem_type), limit, model_name)


def _check_size(node, output: str, dims: list[int], itemsize: int, limit: int, model_name: str) -> None:
    count = 1
    for dim in dims:
        count *= max(int(dim), 1)
    nbytes = count * itemsize
    if count > INT64_MAX or nbytes > limit:
        raise CompileError(f"xla refuses '{model_name}': {_describe(node)} makes '{output}' with {count:,} "
                           f"elements ({nbytes / 2**30:,.1f} GiB), more than this machine's "
                           f"{limit / 2**30:,.1f} GiB of memory", backend="xla", hint=HINT)


def _constant_extent(node: onnx.NodeProto, constants: dict, shapes: dict) -> list[int] | None:
    """The output dims implied by a constant operand (unknown input dims count as 1), or None."""
    def const(index: int) -> np.ndarray | None:
        if len(node.input) > index and node.input[index] in constants:
            return np.asarray(constants[node.input[index]]).reshape(-1)
        return None

    in_dims = list(shapes.get(node.input[0], ((), 0))[0]) if node.input else []
    op = node.op_type
    if op == "ConstantOfShape":
        value = const(0)
        return None if value is None else [int(v) for v in value]
    if op == "Expand":
        value = const(1)
        return None if value is None else [max(int(v), 1) for v in value]
    if op == "Tile":
        value = const(1)
        if value is None:
            return None
        base = in_dims if len(in_dims) == len(value) else [1] * len(value)
        return [(d or 1) * max(int(r), 1) for d, r in zip(base, value)]
    if op == "Pad":
        pads = const(1)
        if pads is None:
            for attr in node.attribute:
                if attr.name == "pads":
                    pads = np.asarray(attr.ints)
        if pads is None or len(pads) % 2:
            return None
        rank = len(pads) // 2
        base = in_dims if len(in_dims) == rank else [1] * rank
        return [max((d or 1) + int(pads[i]) + int(pads[i + rank]), 1) for i, d in enumerate(base)]
    if op == "Resize":
        sizes = const(3)
        if sizes is not None and sizes.size:
            return [int(v) for v in sizes]
        scales = const(2)
        if scales is not None and scales.size and len(in_dims) == scales.size:
            return [max(int((d or 1) * float(s)), 1) for d, s in zip(in_dims, scales)]
    return None


__all__ = ["MAX_INPUTS", "check", "memory_bytes"]
