"""portarun.plugin.iter_graphs: every body once, pre-order, functions after the main graph, no recursion."""

import sys

import onnx
from onnx import TensorProto, helper

from portarun.plugin import iter_graphs


def _if(name: str, then_graph: onnx.GraphProto, else_graph: onnx.GraphProto) -> onnx.NodeProto:
    return helper.make_node("If", ["cond"], [f"{name}.out"], name=name, then_branch=then_graph, else_branch=else_graph)


def _leaf(name: str) -> onnx.GraphProto:
    out = helper.make_tensor_value_info(f"{name}.y", TensorProto.FLOAT, [1])
    return helper.make_graph([helper.make_node("Constant", [], [f"{name}.y"], value_float=1.0, name=name)], name, [], [out])


def _graph(name: str, nodes: list) -> onnx.GraphProto:
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(f"{name}.y", TensorProto.FLOAT, [1])])


def test_pre_order_then_functions_in_file_order():
    inner = _graph("then", [_if("inner_if", _leaf("then.then"), _leaf("then.else"))])
    main = _graph("main", [_if("outer", inner, _leaf("else"))])
    f1 = helper.make_function("local", "f1", ["x"], ["y"], [helper.make_node("Identity", ["x"], ["y"])],
                              [helper.make_opsetid("", 17)])
    f2 = helper.make_function("local", "f2", ["x"], ["y"], [helper.make_node("Identity", ["x"], ["y"])],
                              [helper.make_opsetid("", 17)])
    model = helper.make_model(main, functions=[f1, f2], opset_imports=[helper.make_opsetid("", 17)])
    names = [body.name for body in iter_graphs(model)]
    # attributes in the node's order (onnx.helper sorts them by name: else_branch before then_branch)
    assert names == ["main", "else", "then", "then.else", "then.then", "f1", "f2"]
    assert [body.name for body in iter_graphs(model, functions=False)] == names[:5]
    assert [body.name for body in iter_graphs(inner)] == ["then", "then.else", "then.then"]


def test_nesting_deeper_than_the_recursion_limit_is_walked():
    """Built in place (copying a message that deep exceeds protobuf's own depth limit)."""
    depth = sys.getrecursionlimit() + 500
    root = onnx.GraphProto(name="level0")
    graph = root
    for i in range(depth):
        node = graph.node.add(op_type="Loop", name=f"loop{i}")
        attr = node.attribute.add(name="body", type=onnx.AttributeProto.GRAPH)
        graph = attr.g
        graph.name = f"level{i + 1}"
    assert sum(1 for _ in iter_graphs(root)) == depth + 1
