"""Graphs on which XLA aborts the process or runs for minutes are refused before lowering, naming the node."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("jax")

import portarun  # noqa: E402
from portarun import models  # noqa: E402
from portarun.errors import CompileError  # noqa: E402
from portarun_backends.xla import guards  # noqa: E402


def _model(nodes, inputs, initializers=(), output_shape=None):
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
                              list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _x(shape):
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)


def _ints(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


CASES = {
    "sum arity": _model([helper.make_node("Sum", ["x"] * 30000, ["y"], name="wide")], [_x([2])]),
    "tile overflow": _model([helper.make_node("Tile", ["x", "r"], ["y"], name="t")], [_x([1000, 1000])],
                            [_ints("r", [10**6, 10**6])]),
    "tile on symbolic dims": _model([helper.make_node("Tile", ["x", "r"], ["y"], name="t")], [_x(["a", "b"])],
                                    [_ints("r", [10**9, 10**9])]),
    "expand": _model([helper.make_node("Expand", ["x", "s"], ["y"], name="e")], [_x([1])],
                     [_ints("s", [2**31, 2**31])]),
    "pad": _model([helper.make_node("Pad", ["x", "p"], ["y"], name="p")], [_x([4, 4])],
                  [_ints("p", [10**5] * 4)]),
    "constant of shape": _model([helper.make_node("ConstantOfShape", ["s"], ["y"], name="c")], [],
                                [_ints("s", [2**40, 2**40])]),
    "resize sizes": _model([helper.make_node("Resize", ["x", "", "", "s"], ["y"], name="r")], [_x([1, 1, 4, 4])],
                           [_ints("s", [1, 1, 10**6, 10**6])]),
    "declared output": _model([helper.make_node("Identity", ["x"], ["y"], name="i")], [_x(["n"])],
                              output_shape=[10**7, 10**7]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_naming_the_node(case):
    proto = CASES[case]
    with pytest.raises(CompileError) as caught:
        guards.check(proto, "g")
    node = proto.graph.node[0]
    assert f"{node.op_type} node '{node.name}'" in str(caught.value)
    assert caught.value.hint


def test_nested_subgraph_nodes_are_checked():
    inner = helper.make_graph([helper.make_node("Sum", ["x"] * 5000, ["z"], name="deep")], "then", [],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])])
    proto = _model([helper.make_node("If", ["c"], ["y"], then_branch=inner, else_branch=inner, name="if")],
                   [helper.make_tensor_value_info("c", TensorProto.BOOL, [])])
    with pytest.raises(CompileError, match="Sum node 'deep'"):
        guards.check(proto, "g")


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer", "decoder-tiny"])
def test_real_models_pass(name):
    guards.check(models.build(name).proto, name)


def test_a_small_tile_still_compiles_and_runs():
    proto = _model([helper.make_node("Tile", ["x", "r"], ["y"])], [_x([2, 2])], [_ints("r", [3, 3])], [6, 6])
    with portarun.compile(portarun.load(proto), "xla:cpu") as exe:
        assert exe.run({"x": np.ones((2, 2), np.float32)})["y"].shape == (6, 6)


SCRIPT = """
import numpy as np, portarun
from onnx import helper, TensorProto
g = helper.make_graph([helper.make_node("Sum", ["x"] * 30000, ["y"])], "g",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
try:
    portarun.compile(portarun.load(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])), "xla:cpu")
except portarun.CompileError as exc:
    print("CompileError:", exc.message)
"""


def test_compile_refuses_in_process_instead_of_crashing():
    # in a child: without the guard this SIGSEGVs, and must not take the test run with it
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CompileError: xla refuses 'g': Sum node" in done.stdout
