"""Cheap checks before OpenVINO compiles a graph it would spend minutes (or hours) on.

OpenVINO's CPU plugin fuses chains of single-input nodes with a pass whose time grows with the
square of the chain: 1,000 chained Relu nodes compile in ~18 s, 3,000 in ~230 s, 20,000 chained
Identity nodes in over 400 s (measured on a 2-core x86-64 machine, OpenVINO 2026.4). Real models
have short chains (an activation or two between matmuls), so a chain longer than
``MAX_CHAIN`` is refused as a CompileError naming its first node; so is a node with more than
``MAX_INPUTS`` inputs (a wide Sum becomes such a chain).
"""

from __future__ import annotations

import collections

import onnx

from portarun.plugin import CompileError, iter_graphs

MAX_CHAIN = 1024
# a Sum of 3,000 inputs did not compile within 20 s (it becomes a chain of Adds); real models stay far below
MAX_INPUTS = 1024


def longest_chain(graph: "onnx.GraphProto | onnx.FunctionProto") -> tuple[int, str]:
    """(length, first node's description) of the longest chain of single-input single-output nodes
    whose output feeds only the next one (a function's outputs are names, a graph's are ValueInfos)."""
    consumers: collections.Counter[str] = collections.Counter(
        name for node in graph.node for name in node.input if name)
    consumers.update(getattr(out, "name", out) for out in graph.output)
    length: dict[str, tuple[int, str]] = {}
    best = (0, "")
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if len(inputs) != 1 or len(node.output) != 1:
            continue
        previous = length.get(inputs[0]) if consumers[inputs[0]] == 1 else None
        start = previous[1] if previous else (f"{node.op_type} node '{node.name}'" if node.name
                                              else f"{node.op_type} node (output '{node.output[0]}')")
        entry = ((previous[0] if previous else 0) + 1, start)
        length[node.output[0]] = entry
        best = max(best, entry, key=lambda e: e[0])
    return best


def check(model_proto: onnx.ModelProto, model_name: str, target: str) -> None:
    where = f"openvino refuses '{model_name}' for {target}"
    for value in list(model_proto.graph.input) + list(model_proto.graph.output):
        for dim in value.type.tensor_type.shape.dim if value.type.HasField("tensor_type") else ():
            if dim.HasField("dim_value") and dim.dim_value < -1:
                # OpenVINO reads -1 as dynamic, and died of SIGFPE on a -5 in the fuzz
                raise CompileError(f"{where}: '{value.name}' declares dimension {dim.dim_value}",
                                   backend="openvino", hint="declare a dynamic axis with a dim_param name (or -1)")
    for graph in iter_graphs(model_proto):
        for node in graph.node:
            if len(node.input) > MAX_INPUTS:
                name = node.name or (node.output[0] if node.output else "")
                raise CompileError(f"{where}: {node.op_type} node '{name}' has {len(node.input):,} inputs "
                                   f"(over {MAX_INPUTS:,} compile for minutes)", backend="openvino",
                                   hint="split it into a tree of smaller nodes, or run it on onnxruntime:cpu")
        size, start = longest_chain(graph)
        if size > MAX_CHAIN:
            raise CompileError(f"{where}: a chain of {size:,} single-input nodes from {start} (OpenVINO's "
                               f"compile time grows with the square of it; over {MAX_CHAIN:,} takes minutes to "
                               "hours)", backend="openvino", hint="shorten the chain, or run it on onnxruntime:cpu")


__all__ = ["MAX_CHAIN", "MAX_INPUTS", "check", "longest_chain"]
