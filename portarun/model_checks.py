"""Checks that keep an untrusted ONNX file from reaching code that would crash on it.

``Model.load`` parses files from anywhere. Protobuf accepts many things the rest of the stack
does not: element types that do not exist, strings that are not UTF-8, external-data entries
with non-numeric offsets or unusable paths, declared shapes whose byte size no machine can
hold. Each of those is refused here, before anything allocates, as a ``ModelError`` that
names the tensor and what to fix.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import onnx

from .errors import ModelValidationError, UnsafeModelError

def iter_graphs(root: "onnx.ModelProto | onnx.GraphProto", *, functions: bool = True) -> Iterator[Any]:
    """Every graph body under ``root``: the graph, then its If/Loop/Scan subgraphs depth first (pre-order),
    and for a ModelProto with ``functions`` each local function (FunctionProto; it has ``.node`` too).
    Iterative, not recursive: a hostile file nests subgraphs deeper than Python's recursion limit."""
    bodies: list[Any] = [root.graph] if isinstance(root, onnx.ModelProto) else [root]
    if functions and isinstance(root, onnx.ModelProto):
        bodies[:0] = reversed(root.functions)  # a stack: the main graph pops first, then f1, f2, ...
    while bodies:
        body = bodies.pop()
        yield body
        children = []
        for node in body.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    children.append(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    children.extend(attr.graphs)
        bodies.extend(reversed(children))


def used_names(graph: "onnx.GraphProto") -> set[str]:
    """Every tensor name a node of ``graph`` reads, inside If/Loop/Scan bodies too, and every body's
    outputs: a subgraph reads outer-scope initializers by name without listing them as inputs of its
    node (silero-vad's LSTM weights are sliced inside an If branch), so a main-graph-only scan drops them
    and breaks the model."""
    names: set[str] = set()
    for body in iter_graphs(graph):
        for node in body.node:
            names.update(node.input)
        names.update(o.name for o in body.output)
    return names


# x86-64 and AArch64 address at most 2**48 bytes of virtual memory: a tensor declared bigger
# than that cannot exist on any machine this runs on.
ADDRESSABLE_BYTES = 2**48

_REFUSE_HINT = "the file is corrupt or was written by a broken exporter; re-export it"


def _valid_types() -> set[int]:
    return {value for value in onnx.TensorProto.DataType.values() if value != onnx.TensorProto.UNDEFINED}


def iter_function_tensors(proto: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Tensors held by the attributes of model-local functions' nodes (Constant values, mostly)."""
    for function in proto.functions:
        stack = list(function.node)
        while stack:
            node = stack.pop()
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    yield attr.t
                elif attr.type == onnx.AttributeProto.TENSORS:
                    yield from attr.tensors
                elif attr.type == onnx.AttributeProto.GRAPH:
                    yield from attr.g.initializer
                    stack.extend(attr.g.node)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for graph in attr.graphs:
                        yield from graph.initializer
                        stack.extend(graph.node)


def external_location(tensor: onnx.TensorProto) -> tuple[str, int, int | None]:
    """(location, offset, length) of an external tensor; malformed entries are ModelValidationError."""
    info = {}
    for entry in tensor.external_data:
        key, value = entry.key, entry.value
        if not isinstance(key, str) or not isinstance(value, str):  # protobuf hands back bytes for bad UTF-8
            raise ModelValidationError(f"tensor '{_text(tensor.name)}' has an external-data entry that is not "
                                       "UTF-8 text", hint=_REFUSE_HINT)
        info[key] = value
    location = info.get("location", "")
    if "\x00" in location:
        raise UnsafeModelError(f"tensor '{_text(tensor.name)}' names external data with a NUL byte in its path",
                               hint=_REFUSE_HINT)
    numbers = {}
    for key in ("offset", "length"):
        text = info.get(key)
        if text in (None, ""):
            numbers[key] = None
            continue
        try:
            numbers[key] = int(text)
        except ValueError:
            raise ModelValidationError(f"tensor '{_text(tensor.name)}' has external-data {key}={text[:40]!r}, "
                                       "not a whole number", hint=_REFUSE_HINT) from None
    return location, numbers["offset"] or 0, numbers["length"]


def resolve_inside(base: Path, location: str, tensor_name: str) -> Path:
    """``location`` resolved under ``base``; a path the OS cannot use is an error naming the tensor."""
    try:
        return (base / location).resolve()
    except RuntimeError as exc:  # Python 3.11 raises RuntimeError for a symlink loop
        raise UnsafeModelError(f"tensor '{_text(tensor_name)}' external data '{location[:80]}' is a symlink "
                               f"loop ({exc})", hint="external data must be a plain file inside the model's folder") \
            from None
    except (OSError, ValueError) as exc:
        raise ModelValidationError(f"tensor '{_text(tensor_name)}' external data path '{location[:80]}' is not "
                                   f"usable: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}",
                                   hint=_REFUSE_HINT) from None


def is_file(path: Path, tensor_name: str) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError) as exc:  # name too long, too many links: is_file raises for some
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ModelValidationError(f"external data for tensor '{_text(tensor_name)}' cannot be opened: {reason}",
                                   hint=_REFUSE_HINT) from None


def check_types_and_sizes(proto: onnx.ModelProto, where: str) -> None:
    """Element types must exist; declared shapes must fit in memory; tensor dims must be real."""
    valid = _valid_types()
    graph = proto.graph
    _check_names(graph, where)
    for kind, infos in (("input", graph.input), ("output", graph.output), ("value", graph.value_info)):
        for info in infos:
            _check_value(info, kind, valid, where)
    for tensor in graph.initializer:
        _check_tensor(tensor, valid, where)


def _check_names(graph: onnx.GraphProto, where: str) -> None:
    """Names must be text: protobuf hands back ``bytes`` for a string field that is not UTF-8."""
    named = itertools.chain(((("input", v.name)) for v in graph.input), (("output", v.name) for v in graph.output),
                            (("initializer", t.name) for t in graph.initializer),
                            (("node", n.name) for n in graph.node),
                            (("tensor", name) for n in graph.node for name in itertools.chain(n.input, n.output)))
    for kind, name in named:
        if not isinstance(name, str):
            raise ModelValidationError(f"{where}: {kind} name {_text(name)!r} is not UTF-8 text",
                                       hint=_REFUSE_HINT)


def _check_value(info: onnx.ValueInfoProto, kind: str, valid: set[int], where: str) -> None:
    if not info.type.HasField("tensor_type"):
        return
    tensor_type = info.type.tensor_type
    name = _text(info.name)
    if tensor_type.elem_type and tensor_type.elem_type not in valid:
        raise ModelValidationError(f"{where}: {kind} '{name}' has element type {tensor_type.elem_type}, which "
                                   "ONNX does not define", hint=_REFUSE_HINT)
    if not tensor_type.HasField("shape") or not tensor_type.elem_type:
        return
    if any(not isinstance(dim.dim_param, str) for dim in tensor_type.shape.dim):
        raise ModelValidationError(f"{where}: {kind} '{name}' has a dim name that is not UTF-8 text",
                                   hint=_REFUSE_HINT)
    # dim_value <= 0 is read as a dynamic marker (exporters write -1 and 0); only positive dims count
    count = 1
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value > 0:
            count *= dim.dim_value
    itemsize = _itemsize(tensor_type.elem_type)
    if count * itemsize > ADDRESSABLE_BYTES:
        raise ModelValidationError(f"{where}: {kind} '{name}' declares {count:,} elements "
                                   f"({count * itemsize:,} bytes), beyond addressable memory (2**48 bytes)",
                                   hint="fix the declared shape; a dynamic axis should be a dim_param name")


def _check_tensor(tensor: onnx.TensorProto, valid: set[int], where: str) -> None:
    name = _text(tensor.name)
    if tensor.data_type not in valid:
        raise ModelValidationError(f"{where}: tensor '{name}' has data type {tensor.data_type}, which ONNX does "
                                   "not define", hint=_REFUSE_HINT)
    count = 1
    for dim in tensor.dims:
        if dim < 0:
            raise ModelValidationError(f"{where}: tensor '{name}' has dimension {dim}; stored tensors have "
                                       "real sizes", hint=_REFUSE_HINT)
        count *= dim
    if count * _itemsize(tensor.data_type) > ADDRESSABLE_BYTES:
        raise ModelValidationError(f"{where}: tensor '{name}' declares {count:,} elements, beyond addressable "
                                   "memory", hint=_REFUSE_HINT)


def _itemsize(data_type: int) -> int:
    try:
        return max(1, onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize)
    except (KeyError, TypeError, ValueError):
        return 1


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)




# A Loop this long with a condition that never turns false runs, for practical purposes, for ever.
ENDLESS_TRIPS = 2**31


def endless_loops(proto: onnx.ModelProto) -> list[str]:
    """Loop nodes that provably never finish: no (or an astronomically large constant) trip count and
    a condition that is always true (absent or constant true, passed through unchanged by the body)."""
    found = []
    for body in iter_graphs(proto):
        constants = _bool_and_int_constants(body)
        for node in body.node:
            if node.op_type != "Loop" or node.domain not in ("", "ai.onnx"):
                continue
            trips = node.input[0] if len(node.input) > 0 else ""
            cond = node.input[1] if len(node.input) > 1 else ""
            graph = next((a.g for a in node.attribute if a.name == "body"), None)
            if graph is None:
                continue
            # a negative constant trip count is "no limit" to OpenVINO (ONNX does not define it)
            bounded = trips != "" and not (trips in constants and not 0 <= int(constants[trips]) < ENDLESS_TRIPS)
            if bounded or not (cond == "" or constants.get(cond) is True) or not _keeps_condition(graph):
                continue
            name = f"'{node.name}'" if node.name else f"(output '{node.output[0]}')" if node.output else ""
            found.append(f"Loop node {name}".strip())
    return found


def _bool_and_int_constants(body: Any) -> dict[str, Any]:
    tensors = {t.name: t for t in getattr(body, "initializer", ())}
    for node in body.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    tensors[node.output[0]] = attr.t
    values: dict[str, Any] = {}
    for name, tensor in tensors.items():
        if tensor.data_type in (onnx.TensorProto.BOOL, onnx.TensorProto.INT64, onnx.TensorProto.INT32) \
                and len(tensor.dims) <= 1 and all(d == 1 for d in tensor.dims):
            try:
                value = onnx.numpy_helper.to_array(tensor).reshape(-1)
            except Exception:
                continue
            if value.size == 1:
                values[name] = bool(value[0]) if tensor.data_type == onnx.TensorProto.BOOL else int(value[0])
    return values


def _keeps_condition(body: onnx.GraphProto) -> bool:
    """Does the body hand back its condition input unchanged (through Identity nodes) or constant true?"""
    if len(body.output) < 1 or len(body.input) < 2:
        return False
    produced = {out: node for node in body.node for out in node.output}
    constants = _bool_and_int_constants(body)
    name, seen = body.output[0].name, set()
    while name not in seen:
        seen.add(name)
        if name == body.input[1].name or constants.get(name) is True:
            return True
        node = produced.get(name)
        if node is None or node.op_type != "Identity" or not node.input:
            return False
        name = node.input[0]
    return False

__all__ = ["ADDRESSABLE_BYTES", "check_types_and_sizes", "endless_loops", "external_location", "is_file", "iter_function_tensors",
           "resolve_inside"]
