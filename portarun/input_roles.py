"""What each model input is used for, read from the graph, so that generated feeds are valid.

An integer input that indexes an embedding table (``Gather`` on a weight) must stay inside the
table's row count, one that feeds ``OneHot`` inside its depth; an input used as a mask (by its
name, or because its values only reach a ``Where`` condition) is 0/1. The trace follows an input
through ops that move values without changing them (``Cast``, ``Unsqueeze``, ``Reshape`` ...) and
through ``Add``/``Sub`` of a constant scalar (an offset, as OPT adds 2 to its positions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

# Ops whose output holds the input's values unchanged (reshaped, cast, copied or selected).
PASS_THROUGH = {"Cast", "CastLike", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Expand",
                "Transpose", "Slice", "Concat", "Tile", "Split"}
# Ops that read only an input's shape, never its values.
SHAPE_ONLY = {"Shape", "Size"}
# Ops a weight passes through on its way to a Gather (a quantized or cast embedding table).
WEIGHT_PATH = {"Cast", "Identity", "DequantizeLinear"}

MASK_NAME = re.compile(r"(^|_)(attention_)?mask$|^mask|_mask(_|$)", re.IGNORECASE)
POSITION_NAME = re.compile(r"position", re.IGNORECASE)
TYPE_NAME = re.compile(r"token_type|segment", re.IGNORECASE)


@dataclass(frozen=True)
class InputRole:
    """How to draw one input: ``kind`` is index, position, mask, int, bool, float or image.

    Integer kinds draw from ``[low, high)``; ``reason`` says where the bound came from, and
    ``inferred`` is False when nothing in the graph or the name bounded an integer input.
    """

    name: str
    kind: str
    low: float = 0
    high: float | None = None
    reason: str = ""
    inferred: bool = True
    choices: tuple[int, ...] = ()  # kind "choice": the values the graph tells apart


class _Graph:
    def __init__(self, graph: onnx.GraphProto):
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        self.producer: dict[str, onnx.NodeProto] = {}
        for node in graph.node:
            for index, name in enumerate(node.input):
                if name:
                    self.consumers.setdefault(name, []).append((node, index))
            for name in node.output:
                self.producer[name] = node
        self.initializers = {t.name: t for t in graph.initializer}

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or a Constant node's output, else None."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
                if attr.name in ("value_int", "value_ints"):
                    return np.array(onnx.helper.get_attribute_value(attr))
        return None

    def weight_dims(self, name: str) -> tuple[tuple[int, ...], str] | None:
        """Dims and name of the weight behind ``name`` (through Cast/Identity/DequantizeLinear)."""
        for _ in range(4):
            if name in self.initializers:
                return tuple(self.initializers[name].dims), name
            node = self.producer.get(name)
            if node is None:
                return None
            if node.op_type == "Constant":
                value = self.constant(name)
                return (tuple(value.shape), name) if value is not None else None
            if node.op_type not in WEIGHT_PATH or not node.input:
                return None
            name = node.input[0]
        return None


def _attr(node: onnx.NodeProto, name: str, default):
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


class _Uses:
    """What the values of one input reach: index bounds, Where conditions, other arithmetic."""

    def __init__(self) -> None:
        self.bounds: list[tuple[int, str]] = []
        self.choices: set[int] = set()  # integer constants the values are compared with (Equal)
        self.where_uses = 0  # reaching a Where's condition
        self.other_uses = 0  # reaching any other op that reads the values

    @property
    def only_selects(self) -> bool:
        return self.where_uses > 0 and self.other_uses == 0


def _trace(g: _Graph, name: str) -> _Uses:
    uses = _Uses()
    seen: set[str] = set()
    todo = [(name, 0)]
    while todo:
        tensor, offset = todo.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        for node, index in g.consumers.get(tensor, ()):
            op = node.op_type
            if op in SHAPE_ONLY:
                continue
            if op == "Where" and index == 0:
                uses.where_uses += 1
                continue
            if (op in PASS_THROUGH and (index == 0 or op == "Concat")) or (op == "Gather" and index == 0):
                todo.extend((out, offset) for out in node.output)  # the values move on unchanged
                continue
            uses.other_uses += 1
            if op in ("Add", "Sub") and len(node.input) == 2:
                other = g.constant(node.input[1 - index])
                if other is not None and other.size == 1 and other.dtype.kind in "iu" and (op == "Add" or index == 0):
                    step = int(other.reshape(()))
                    todo.extend((out, offset + (step if op == "Add" else -step)) for out in node.output)
            elif op == "Gather" and index == 1:
                found = g.weight_dims(node.input[0])
                if found is not None and found[0]:
                    dims, weight = found
                    axis = int(_attr(node, "axis", 0)) % len(dims)
                    uses.bounds.append((dims[axis] - offset, f"indexes '{weight}' ({dims[axis]} rows) through Gather"))
            elif op == "Equal" and len(node.input) == 2:
                other = g.constant(node.input[1 - index])
                if other is not None and other.size == 1 and other.dtype.kind in "iu":
                    uses.choices.add(int(other.reshape(())) - offset)  # a switch: e.g. silero's sample rate
            elif op == "OneHot" and index == 0:
                depth = g.constant(node.input[1])
                if depth is not None and depth.size == 1:
                    uses.bounds.append((int(depth.reshape(())) - offset, f"is the index of a OneHot of depth {int(depth.reshape(()))}"))
            elif op == "EmbedLayerNormalization" and index in (0, 1):  # com.microsoft: ids -> word, segment -> segment table
                found = g.weight_dims(node.input[2 + index]) if len(node.input) > 2 + index else None
                if found is not None and found[0]:
                    uses.bounds.append((found[0][0] - offset, f"indexes '{found[1]}' ({found[0][0]} rows) through EmbedLayerNormalization"))
    return uses


def input_roles(model) -> dict[str, InputRole]:
    """One InputRole per model input (a ``portarun.Model``), from the graph and the input names."""
    g = _Graph(model.proto.graph)
    return {spec.name: role_of(spec, _trace(g, spec.name), _first_ops(g, spec.name)) for spec in model.inputs}


def _first_ops(g: _Graph, name: str) -> list[tuple[str, np.ndarray | None]]:
    """(op, constant operand) of each direct consumer: how a float input is scaled first."""
    out = []
    for node, index in g.consumers.get(name, ()):
        other = g.constant(node.input[1 - index]) if len(node.input) == 2 else None
        out.append((node.op_type, other))
    return out


def role_of(spec, uses: _Uses | None = None, first_ops=()) -> InputRole:
    """The role of one input; without ``uses`` (no graph) only its name and dtype decide."""
    name, kind = spec.name, spec.dtype.kind
    masked = bool(MASK_NAME.search(name)) or (uses is not None and uses.only_selects)
    if kind == "b":
        if "use_cache" in name:  # merged decoders: the cache branch needs a non-empty past
            return InputRole(name, "bool", 0, 1, "selects the cache branch; False runs without a past")
        if masked:
            return InputRole(name, "mask", 0, 2, "a mask (by its name or its use in Where)")
        return InputRole(name, "bool", 0, 2, "a boolean")
    if kind == "f" or spec.dtype.name == "bfloat16":
        if _scales_pixels(first_ops):
            return InputRole(name, "image", 0, 256, "pixel values: the model first scales them by 1/255")
        return InputRole(name, "float", reason="floats ~ N(0, 1)")
    if kind not in "iu":
        return InputRole(name, "other", reason=f"type {spec.dtype}", inferred=False)
    bounds = sorted(uses.bounds) if uses is not None else []
    high = bounds[0][0] if bounds else None
    if high is not None and high < 1:
        bounds, high = [], None
    if POSITION_NAME.search(name):
        return InputRole(name, "position", 0, high, "positions 0, 1, 2 ... along the last axis"
                         + (f"; {bounds[0][1]}" if bounds else ""))
    if masked and not bounds:
        return InputRole(name, "mask", 0, 2, "a mask (by its name or its use in Where): 0/1, at least one 1 per row")
    if bounds:
        return InputRole(name, "index", 0, high, bounds[0][1])
    if uses is not None and uses.choices:
        values = tuple(sorted(uses.choices))
        return InputRole(name, "choice", min(values), max(values) + 1,
                         f"compared with {', '.join(map(str, values))} (Equal): one of those", choices=values)
    if TYPE_NAME.search(name):
        return InputRole(name, "index", 0, 2, "token type / segment ids (by its name): 0 or 1")
    if spec.dtype == np.uint8:
        return InputRole(name, "image", 0, 256, "uint8 values 0-255 (image-like)")
    return InputRole(name, "int", 0, None, "no bound found in the graph", inferred=False)


def _scales_pixels(first_ops) -> bool:
    for op, value in first_ops:
        if value is None or value.size != 1 or value.dtype.kind != "f":
            continue
        scalar = float(value.reshape(()))
        if (op == "Div" and 254 <= scalar <= 256) or (op == "Mul" and 0.0039 <= scalar <= 0.00393):
            return True
    return False
