"""Can TensorRT take this Q/DQ graph as written? Checked before building, without TensorRT.

TensorRT's explicit quantization is symmetric and signed: INT8 (weights and
activations) and INT4 (weights only), every zero point 0. A graph quantized
asymmetrically or to uint8/uint4 would be rejected deep inside the builder or,
worse, requantized; we say so up front and name the nodes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from portarun.plugin import Model, onnx_domain

_SIGNED = {onnx.TensorProto.INT8, onnx.TensorProto.INT4}
_QDQ = {"QuantizeLinear", "DequantizeLinear"}


def _constant_tensors(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    tensors = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    tensors[node.output[0]] = attr.t
    return tensors


def qdq_problems(model: Model, limit: int = 5) -> list[str]:
    """Why TensorRT cannot take the model's Q/DQ nodes (empty when it can)."""
    graph = model.proto.graph
    constants = _constant_tensors(graph)
    problems: list[str] = []
    for node in graph.node:
        if node.op_type not in _QDQ or onnx_domain(node.domain):
            continue
        label = f"{node.op_type} '{node.name or node.output[0]}'"
        zero_point = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        quantized_type = None
        if zero_point is not None:
            quantized_type = zero_point.data_type
            values = numpy_helper.to_array(zero_point)
            if np.any(np.asarray(values, dtype=np.float64) != 0):
                problems.append(f"{label} has a nonzero zero point (TensorRT quantization is symmetric)")
        elif node.op_type == "DequantizeLinear" and node.input[0] in constants:
            quantized_type = constants[node.input[0]].data_type
        if node.op_type == "QuantizeLinear":
            for attr in node.attribute:
                if attr.name == "output_dtype" and attr.i:
                    quantized_type = attr.i
        if quantized_type is not None and quantized_type not in _SIGNED and quantized_type != onnx.TensorProto.UNDEFINED:
            if quantized_type in (onnx.TensorProto.FLOAT8E4M3FN,):
                continue  # FP8 is TensorRT-native too
            name = onnx.TensorProto.DataType.Name(quantized_type)
            problems.append(f"{label} quantizes to {name}; TensorRT takes signed INT8 / INT4 only")
        if len(problems) >= limit:
            break
    return problems
