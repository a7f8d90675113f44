"""fp32 -> fp16 ONNX conversion, for TensorRT 11's strongly typed networks.

TensorRT 11 has no FP16 builder flag: the graph itself must be fp16. We reuse the
converter ONNX Runtime ships (``onnxruntime.transformers.float16``) or, without ONNX
Runtime, the same function from ``onnxconverter-common``. Inputs and outputs stay
fp32 (``keep_io_types``), so the compiled model's signature does not change.
"""

from __future__ import annotations

import heapq

import onnx

from portarun.plugin import Model, UnsupportedError

BACKEND = "tensorrt"


def _converter():
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:
        try:
            from onnxconverter_common.float16 import convert_float_to_float16
        except ImportError:
            raise UnsupportedError(
                f"{BACKEND}: TensorRT 11 needs the model converted to fp16, and no converter is installed",
                backend=BACKEND, hint="pip install onnxruntime (or onnxconverter-common)") from None
    return convert_float_to_float16


def to_fp16(model: Model) -> Model:
    """The model with float tensors in fp16 and fp32 inputs/outputs, nodes in topological order."""
    converted = _converter()(model.proto, keep_io_types=True, disable_shape_infer=False)
    _sort_nodes(converted.graph)
    return Model.from_proto(converted, name=model.name, check=False)


def _sort_nodes(graph: onnx.GraphProto) -> None:
    """Topologically sort ``graph.node`` in place (stable).

    The converter appends its input casts at the end of the node list; ONNX requires
    producers before consumers, and parsers that read nodes in order depend on it.
    """
    nodes = list(graph.node)
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    producer = {out: index for index, node in enumerate(nodes) for out in node.output}
    waiting = [0] * len(nodes)  # inputs each node still waits for
    consumers: dict[int, list[int]] = {}
    for index, node in enumerate(nodes):
        for name in set(_needed(node)):
            if name not in available and name in producer:
                waiting[index] += 1
                consumers.setdefault(producer[name], []).append(index)
    heap = [index for index, count in enumerate(waiting) if count == 0]
    heapq.heapify(heap)  # smallest original index first: the order changes only where it must
    ordered: list[onnx.NodeProto] = []
    while heap:
        index = heapq.heappop(heap)
        ordered.append(nodes[index])
        for consumer in consumers.get(index, []):
            waiting[consumer] -= 1
            if waiting[consumer] == 0:
                heapq.heappush(heap, consumer)
    if len(ordered) != len(nodes):  # a cycle: leave the graph as it was, the parser will say where
        return
    del graph.node[:]
    graph.node.extend(ordered)


def _needed(node: onnx.NodeProto) -> list[str]:
    """Inputs of ``node``, including outer-scope names its subgraphs read."""
    names = list(node.input)
    for attr in node.attribute:
        subgraphs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
        for sub in subgraphs:
            local = {i.name for i in sub.input} | {t.name for t in sub.initializer}
            for inner in sub.node:
                local.update(inner.output)
                names.extend(name for name in _needed(inner) if name not in local)
    return names
