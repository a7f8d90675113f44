"""Where a model's result on given feeds is undefined, so backends may legitimately disagree.

ONNX leaves some results to the implementation: ``Gather`` with an index outside the axis
(onnxruntime and the reference raise, OpenVINO returns 0, XLA clamps or returns NaN), integer
``Div``/``Mod`` by zero, NaN inputs (propagated, dropped by a max, or turned into anything by a
cast), and an initializer holding more bytes than its shape needs (only OpenVINO reads it).
``undefined_behaviour(model, feeds)`` names each such spot it can see from the feeds and the
constants; ``compare(..., undefined=...)`` then reports a divergence instead of a silent pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from .model import Model

_INDEXED = ("Gather", "GatherElements")
_INT_DIVISION = ("Div", "Mod")


def undefined_behaviour(model: Model, feeds: Mapping[str, Any] | None = None) -> list[str]:
    """Reasons (one line each) why backends may legitimately differ on ``model`` with ``feeds``."""
    graph = model.proto.graph
    values: dict[str, np.ndarray] = {}
    reasons: list[str] = []
    for tensor in graph.initializer:
        extra = _extra_bytes(tensor)
        if extra:
            reasons.append(f"initializer '{tensor.name}' holds {extra} bytes more than its shape needs "
                           "(only OpenVINO reads such a tensor)")
        if _small(tensor):
            try:
                values[tensor.name] = numpy_helper.to_array(tensor)
            except Exception:  # unreadable: nothing to say about it here
                pass
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR and _small(attr.t):
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    shapes = {name: tuple(array.shape) for name, array in values.items()}
    for name, value in (feeds or {}).items():
        array = np.asarray(value)
        values[name] = array
        shapes[name] = tuple(array.shape)
        if array.dtype.kind == "f" and array.size and np.isnan(array).any():
            reasons.append(f"input '{name}' holds {int(np.isnan(array).sum())} NaN value(s): backends propagate "
                           "or drop NaN differently")
    for node in graph.node:
        where = f"{node.op_type} node '{node.name}'" if node.name else f"{node.op_type} node (output " \
                                                                        f"'{node.output[0] if node.output else ''}')"
        if node.op_type in _INDEXED and len(node.input) >= 2:
            reason = _out_of_range(node, values, shapes)
            if reason:
                reasons.append(f"{where}: {reason}")
        elif node.op_type in _INT_DIVISION and len(node.input) >= 2:
            divisor = values.get(node.input[1])
            if divisor is not None and divisor.dtype.kind in "iu" and divisor.size and (divisor == 0).any():
                reasons.append(f"{where}: integer division by zero in '{node.input[1]}' "
                               "(undefined: backends raise, return 0 or garbage)")
    return reasons


def _out_of_range(node: onnx.NodeProto, values: dict, shapes: dict) -> str:
    indices = values.get(node.input[1])
    data_shape = shapes.get(node.input[0])
    if indices is None or data_shape is None or indices.dtype.kind not in "iu" or not indices.size:
        return ""
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    if not -len(data_shape) <= axis < len(data_shape):
        return ""
    size = data_shape[axis]
    bad = (indices < -size) | (indices >= size)
    if not bad.any():
        return ""
    first = int(indices[bad].reshape(-1)[0])
    return (f"{int(bad.sum())} index(es) in '{node.input[1]}' outside [-{size}, {size - 1}] (e.g. {first}): "
            "onnxruntime and the reference raise, OpenVINO returns 0, XLA clamps")


def _small(tensor: onnx.TensorProto) -> bool:
    count = 1
    for dim in tensor.dims:
        count *= dim
    return count <= 1 << 16 and tensor.data_location != onnx.TensorProto.EXTERNAL


def _extra_bytes(tensor: onnx.TensorProto) -> int:
    if not tensor.raw_data:
        return 0
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return 0
    if tensor.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        return 0  # packed two per byte; onnx itself checks those
    count = 1
    for dim in tensor.dims:
        count *= dim
    return max(0, len(tensor.raw_data) - count * itemsize)


__all__ = ["undefined_behaviour"]
