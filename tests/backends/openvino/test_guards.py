"""Chains OpenVINO compiles for minutes to hours are refused before compiling, naming where they start."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import portarun
from portarun import models
from portarun.errors import CompileError
from portarun_backends.openvino import guards


def _chain(n, op="Relu"):
    nodes = [helper.make_node(op, [f"t{i}"], [f"t{i + 1}"], name=f"n{i}") for i in range(n)]
    nodes[0].input[0], nodes[-1].output[0] = "x", "y"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    return portarun.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_a_very_long_chain_is_refused_naming_its_first_node():
    with pytest.raises(CompileError, match=r"chain of 20,000 single-input nodes from Identity node 'n0'") as caught:
        portarun.compile(_chain(20000, "Identity"), "openvino:cpu")
    assert caught.value.hint


def test_a_short_chain_compiles_and_runs():
    with portarun.compile(_chain(20), "openvino:cpu") as exe:
        assert exe.run({"x": np.full(4, -1.0, np.float32)})["y"].tolist() == [0.0] * 4


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer", "decoder-tiny"])
def test_real_models_have_short_chains(name):
    assert guards.longest_chain(models.build(name).proto.graph)[0] < guards.MAX_CHAIN


def test_a_value_with_two_consumers_breaks_the_chain():
    model = _chain(10)
    graph = model.proto.graph
    graph.node.append(helper.make_node("Neg", ["t5"], ["side"]))
    assert guards.longest_chain(graph)[0] == 5


def test_a_node_with_thousands_of_inputs_is_refused():
    graph = helper.make_graph([helper.make_node("Sum", ["x"] * 3000, ["y"], name="wide")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    model = portarun.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    with pytest.raises(CompileError, match="Sum node 'wide' has 3,000 inputs"):
        portarun.compile(model, "openvino:cpu")


def test_a_wide_node_inside_a_loop_body_is_refused_too():
    body = helper.make_graph([helper.make_node("Identity", ["cond"], ["cond_out"]),
                              helper.make_node("Sum", ["acc"] * 2000, ["acc_out"], name="deep")], "body",
                             [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                              helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("acc", TensorProto.FLOAT, [4])],
                             [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [4])])
    graph = helper.make_graph([helper.make_node("Loop", ["m", "c", "x"], ["y"], body=body)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]),
                               helper.make_tensor_value_info("m", TensorProto.INT64, []),
                               helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    model = portarun.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    with pytest.raises(CompileError, match="Sum node 'deep' has 2,000 inputs"):
        portarun.compile(model, "openvino:cpu")


def test_a_negative_declared_dim_is_refused_before_openvino_sees_it():
    # dim -5 killed an OpenVINO worker with SIGFPE in the fuzz (mutant 290, seed 7)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = portarun.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), check=False)
    with pytest.raises(CompileError, match="declares dimension -5"):
        portarun.compile(model, "openvino:cpu")
