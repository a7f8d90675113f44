"""ONNX graph -> JAX function.

A ``Graph`` is the ONNX graph prepared once per compile: every node bound to
its op function (all unknown ops are collected first and reported together),
attributes decoded, subgraphs prepared recursively.  ``run_graph`` walks the
nodes with an environment of values.  A value is a numpy array when it is
known while tracing (constants, shapes, everything computed only from them:
the Shape -> Gather -> Concat -> Reshape chains of exported models fold to
Python values so XLA sees static shapes) and a JAX array otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from portarun.plugin import CompileError, onnx_domain, opset_versions

from . import ops as op_registry


class Unsupported(Exception):
    """Raised by an op function for an attribute/type combination it does not handle."""


def is_const(value: Any) -> bool:
    """True for values known while tracing (numpy), False for JAX arrays and tracers."""
    return isinstance(value, (np.ndarray, np.generic))


def tensor_to_numpy(tensor: onnx.TensorProto) -> np.ndarray:
    return numpy_helper.to_array(tensor)


def _attr_value(attr: onnx.AttributeProto, opsets: dict[str, int], outer: set[str], functions) -> Any:
    if attr.ref_attr_name:  # inside a function body; bound per call by _bind_function_attrs
        return None
    kind = attr.type
    A = onnx.AttributeProto
    if kind == A.GRAPH:
        return Graph(attr.g, opsets, outer, functions)
    if kind == A.GRAPHS:
        return [Graph(g, opsets, outer, functions) for g in attr.graphs]
    if kind == A.TENSOR:
        return tensor_to_numpy(attr.t)
    if kind == A.TENSORS:
        return [tensor_to_numpy(t) for t in attr.tensors]
    if kind == A.SPARSE_TENSOR:
        return attr.sparse_tensor
    if kind == A.TYPE_PROTO:
        return attr.tp
    value = helper.get_attribute_value(attr)
    if kind == A.STRING:
        return value.decode("utf-8", errors="replace")
    if kind == A.STRINGS:
        return [v.decode("utf-8", errors="replace") for v in value]
    if kind == A.INTS:
        return [int(v) for v in value]
    if kind == A.FLOATS:
        return [float(v) for v in value]
    return value


@dataclass
class Node:
    op_type: str
    domain: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    opset: int
    fn: Callable | None = None
    fold: bool = True
    function: "LocalFunction | None" = None  # body of a model-local function, when the op is one
    proto: onnx.NodeProto | None = None  # kept for ops lowered through their ONNX function body

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)


class Graph:
    """An ONNX graph prepared for lowering (nodes bound to op functions)."""

    def __init__(self, proto: onnx.GraphProto, opsets: dict[str, int], outer: set[str] | None = None,
                 functions: dict | None = None):
        self.proto = proto
        self.name = proto.name
        self.opsets = opsets
        self.functions = functions or {}
        self.inputs = [vi.name for vi in proto.input]
        self.outputs = [vi.name for vi in proto.output]
        self.initializers = {t.name: t for t in proto.initializer}
        known = set(outer or ()) | set(self.inputs) | set(self.initializers)
        self.nodes: list[Node] = []
        self.missing: set[str] = set()
        for proto_node in proto.node:
            node = self._prepare(proto_node, known)
            self.nodes.append(node)
            known.update(node.outputs)

    def _prepare(self, proto_node: onnx.NodeProto, known: set[str]) -> Node:
        domain = onnx_domain(proto_node.domain)
        opset = self.opsets.get(domain, self.opsets.get("", 1))
        attrs = {a.name: _attr_value(a, self.opsets, known, self.functions) for a in proto_node.attribute}
        node = Node(proto_node.op_type, domain, proto_node.name, list(proto_node.input), list(proto_node.output),
                    attrs, opset)
        for value in attrs.values():
            subs = value if isinstance(value, list) else [value]
            for sub in subs:
                if isinstance(sub, Graph):
                    self.missing |= sub.missing
        function = self.functions.get((proto_node.domain, proto_node.op_type))
        if function is not None:
            node.function = function
            self.missing |= function.graph.missing
            return node
        definition = op_registry.lookup(domain, proto_node.op_type, opset)
        if definition is None and schema_function_available(proto_node.op_type, opset, domain):
            node.proto = proto_node
            node.fn = call_schema_function
            node.fold = False
            return node
        if definition is None:
            self.missing.add(proto_node.op_type if not domain else f"{domain}::{proto_node.op_type}")
        else:
            node.fn = definition.fn
            node.fold = definition.fold
        return node


@dataclass
class LocalFunction:
    """A FunctionProto of the model, prepared like a graph; called with its attributes bound."""

    proto: onnx.FunctionProto
    graph: Graph


def model_graph(model: onnx.ModelProto) -> Graph:
    """The model's main graph prepared for lowering (its local functions too); ``.missing`` lists
    every op type without a lowering."""
    opsets = opset_versions(model.opset_import)
    return Graph(model.graph, opsets, set(), prepare_functions(model, opsets))


def prepare_functions(model: onnx.ModelProto, opsets: dict[str, int]) -> dict:
    functions: dict = {}
    for fn in model.functions:
        fn_opsets = dict(opsets)
        fn_opsets.update(opset_versions(fn.opset_import))
        graph_proto = helper.make_graph(list(fn.node), fn.name,
                                        [helper.make_value_info(i, onnx.TypeProto()) for i in fn.input],
                                        [helper.make_value_info(o, onnx.TypeProto()) for o in fn.output])
        functions[(fn.domain, fn.name)] = LocalFunction(fn, Graph(graph_proto, fn_opsets, set(), functions))
    return functions


@dataclass
class Context:
    """Per-trace facts the op functions need."""

    compute_dtype: Any = None  # jnp dtype floats compute in (None: as the model says)
    rng_seed: int = 0
    rng_counter: list[int] = field(default_factory=lambda: [0])
    eager: bool = False

    def next_key(self, seed: float | None = None):
        import jax

        if seed is not None:
            return jax.random.PRNGKey(int(seed))
        self.rng_counter[0] += 1
        return jax.random.PRNGKey(self.rng_seed * 7919 + self.rng_counter[0])


class NodeContext:
    """What an op function sees as ``n``."""

    __slots__ = ("node", "ctx", "env")

    def __init__(self, node: Node, ctx: Context, env: dict):
        self.node = node
        self.ctx = ctx
        self.env = env

    def attr(self, name: str, default: Any = None) -> Any:
        return self.node.attrs.get(name, default)

    def __getitem__(self, name: str) -> Any:
        return self.node.attrs[name]

    @property
    def opset(self) -> int:
        return self.node.opset

    @property
    def n_outputs(self) -> int:
        return len(self.node.outputs)

    def output_used(self, index: int) -> bool:
        return index < len(self.node.outputs) and bool(self.node.outputs[index])

    def run_subgraph(self, graph: Graph, inputs: list | None = None) -> list:
        """Run a subgraph with the enclosing scope visible; ``inputs`` bind its formal inputs."""
        env = dict(self.env)
        for name, value in zip(graph.inputs, inputs or []):
            env[name] = value
        return run_graph(graph, env, self.ctx)


def _fold_outputs(result: Any) -> Any:
    import jax

    from .jaxenv import is_tracer

    if isinstance(result, (tuple, list)) and not isinstance(result, np.ndarray):
        return type(result)(_fold_outputs(r) for r in result)
    if isinstance(result, jax.Array) and not is_tracer(result):
        return np.asarray(result)
    if isinstance(result, np.generic):
        return np.asarray(result)
    return result


def _call(node: Node, ctx: Context, env: dict, args: list) -> Any:
    n = NodeContext(node, ctx, env)
    if node.function is not None:
        return _call_function(node, ctx, args)
    if node.fold and not ctx.eager and all(a is None or is_const(a) or _is_const_seq(a) for a in args):
        import jax

        with jax.ensure_compile_time_eval():
            return _fold_outputs(node.fn(n, *args))
    return node.fn(n, *args)


def _is_const_seq(value: Any) -> bool:
    return isinstance(value, list) and all(is_const(v) for v in value)


def _call_function(node: Node, ctx: Context, args: list) -> Any:
    fn: LocalFunction = node.function
    defaults = {a.name: a for a in fn.proto.attribute_proto}
    return run_function(fn.proto, fn.graph, node.attrs, defaults, args, ctx)


def run_function(proto: onnx.FunctionProto, graph: "Graph", call_attrs: dict, defaults: dict, args: list,
                 ctx: Context) -> tuple:
    """Run a function body: formal inputs bound to ``args``, attribute references to the call's values."""
    env: dict = {}
    for name, value in zip(proto.input, args):
        if name:
            env[name] = value
    if any(a.ref_attr_name for n in proto.node for a in n.attribute):
        graph = _bind_function_attrs(proto, graph, call_attrs, defaults)
    for name in graph.inputs:
        env.setdefault(name, None)
    return tuple(run_graph(graph, env, ctx))


def _function_graph(proto: onnx.FunctionProto, nodes) -> onnx.GraphProto:
    return helper.make_graph(list(nodes), proto.name,
                             [helper.make_value_info(i, onnx.TypeProto()) for i in proto.input],
                             [helper.make_value_info(o, onnx.TypeProto()) for o in proto.output])


def _bind_function_attrs(proto: onnx.FunctionProto, graph: "Graph", call_attrs: dict, defaults: dict) -> "Graph":
    # Rebuild the body with ref attributes replaced by the call's values (or the defaults).
    nodes = []
    for proto_node in proto.node:
        new = onnx.NodeProto()
        new.CopyFrom(proto_node)
        del new.attribute[:]
        for a in proto_node.attribute:
            if a.ref_attr_name:
                if a.ref_attr_name in call_attrs:
                    value = call_attrs[a.ref_attr_name]
                    if isinstance(value, np.ndarray):
                        made = helper.make_attribute(a.name, numpy_helper.from_array(value))
                    else:
                        made = helper.make_attribute(a.name, value)
                    new.attribute.append(made)
                elif a.ref_attr_name in defaults and defaults[a.ref_attr_name].type:
                    d = onnx.AttributeProto()
                    d.CopyFrom(defaults[a.ref_attr_name])
                    d.name = a.name
                    new.attribute.append(d)
            else:
                new.attribute.append(a)
        nodes.append(new)
    return Graph(_function_graph(proto, nodes), graph.opsets, set(), graph.functions)


# -- ops lowered through the function body their ONNX schema defines -----------------------

_SCHEMA_CACHE: dict = {}


def _schema(op_type: str, opset: int, domain: str):
    try:
        return onnx.defs.get_schema(op_type, opset, domain)
    except Exception:
        return None


def schema_function_available(op_type: str, opset: int, domain: str) -> bool:
    schema = _schema(op_type, opset, domain)
    return schema is not None and (schema.has_function or schema.has_context_dependent_function)


def _type_of(value: Any) -> onnx.TypeProto:
    if value is None:
        return onnx.TypeProto()
    if isinstance(value, list):
        inner = _type_of(value[0]) if value else onnx.TypeProto()
        return helper.make_sequence_type_proto(inner)
    dtype = np.dtype(value.dtype)
    return helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(dtype), list(value.shape))


def call_schema_function(n: "NodeContext", *args: Any) -> tuple:
    """Lower an op with no lowering of its own by running its ONNX function body (e.g. Attention)."""
    node = n.node
    schema = _schema(node.op_type, node.opset, node.domain)
    types = [_type_of(a) for a in args]
    key = (node.op_type, node.domain, node.opset, node.proto.SerializeToString(deterministic=True),
           tuple(t.SerializeToString(deterministic=True) for t in types))
    cached = _SCHEMA_CACHE.get(key)
    if cached is None:
        versions = [v for v in schema.context_dependent_function_opset_versions if v <= node.opset]
        if versions:
            filled = onnx.NodeProto()
            filled.CopyFrom(node.proto)
            present = {a.name for a in filled.attribute}
            for name, attr in schema.attributes.items():
                if name not in present and attr.default_value is not None and attr.default_value.type:
                    filled.attribute.append(attr.default_value)
            data = schema.get_context_dependent_function_with_opset_version(
                max(versions), filled.SerializeToString(), [t.SerializeToString() for t in types])
        else:
            versions = [v for v in schema.function_opset_versions if v <= node.opset]
            data = schema.get_function_with_opset_version(max(versions))
        proto = onnx.FunctionProto()
        proto.ParseFromString(data)
        opsets = {"": node.opset}
        opsets.update(opset_versions(proto.opset_import))
        body = Graph(_function_graph(proto, proto.node), opsets, set(), {})
        if body.missing:
            raise CompileError(f"{node.op_type} is lowered through its ONNX function body, which uses op(s) "
                               f"with no XLA lowering: {', '.join(sorted(body.missing))}", backend="xla")
        defaults = {name: attr.default_value for name, attr in schema.attributes.items()
                    if attr.default_value is not None and attr.default_value.type}
        cached = (proto, body, defaults)
        if len(_SCHEMA_CACHE) > 4096:
            _SCHEMA_CACHE.clear()
        _SCHEMA_CACHE[key] = cached
    proto, body, defaults = cached
    outs = run_function(proto, body, node.attrs, defaults, list(args), n.ctx)
    return outs[:len(node.outputs)]


def run_graph(graph: Graph, env: dict, ctx: Context) -> list:
    """Evaluate ``graph`` over ``env`` (name -> value); returns its outputs in order."""
    for name, tensor in graph.initializers.items():
        if name not in env:
            env[name] = tensor_to_numpy(tensor)
    for node in graph.nodes:
        args = [env[name] if name else None for name in node.inputs]
        try:
            result = _call(node, ctx, env, args)
        except (CompileError, Unsupported):
            raise
        except Exception as exc:
            where = f"{node.op_type} node '{node.name}'" if node.name else f"{node.op_type} node"
            raise _annotate(exc, where)
        if not isinstance(result, (tuple,)):
            result = (result,)
        for name, value in zip(node.outputs, result):
            if name:
                env[name] = value
    return [env.get(name) for name in graph.outputs]


def _annotate(exc: Exception, where: str) -> Exception:
    try:
        exc.add_note(f"while lowering {where}")
    except AttributeError:  # pragma: no cover - Python < 3.11
        pass
    return exc


__all__ = ["Context", "Graph", "Node", "NodeContext", "Unsupported", "is_const",
           "prepare_functions", "run_graph", "tensor_to_numpy"]
