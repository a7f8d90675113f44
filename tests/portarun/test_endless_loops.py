"""A Loop that provably never finishes is refused at compile on every backend, instead of hanging the caller."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import portarun
from portarun.errors import CompileError


def _loop_model(trips, cond_value=True, body_cond="identity"):
    body_nodes = [helper.make_node("Add", ["acc", "one"], ["acc_out"])]
    if body_cond == "identity":
        body_nodes.append(helper.make_node("Identity", ["cond"], ["cond_out"]))
    elif body_cond == "constant":
        body_nodes.append(helper.make_node("Constant", [], ["cond_out"],
                                           value=numpy_helper.from_array(np.array(True), "t")))
    else:  # the body computes its condition: it may turn false
        body_nodes.append(helper.make_node("Less", ["i", "three"], ["cond_out"]))
    body = helper.make_graph(body_nodes, "body",
                             [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                              helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("acc", TensorProto.FLOAT, [4])],
                             [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                              helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [4])],
                             [numpy_helper.from_array(np.ones(4, np.float32), "one"),
                              numpy_helper.from_array(np.array(3, np.int64), "three")])
    initializers = [numpy_helper.from_array(np.array(cond_value), "c")]
    if trips is not None:
        initializers.append(numpy_helper.from_array(np.array(trips, np.int64), "m"))
    graph = helper.make_graph([helper.make_node("Loop", ["m" if trips is not None else "", "c", "a"], ["y"],
                                                body=body, name="spin")], "g",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializers)
    return portarun.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


@pytest.mark.parametrize("trips, body_cond", [(None, "identity"), (None, "constant"), (-1, "identity"),
                                              (2**62, "identity")])
def test_endless_loops_are_refused(trips, body_cond):
    with pytest.raises(CompileError, match="Loop node 'spin' has no trip count") as caught:
        portarun.compile(_loop_model(trips, body_cond=body_cond), "reference")
    assert caught.value.hint


@pytest.mark.parametrize("trips, cond_value, body_cond, expected", [(3, True, "identity", 4.0),
                                                                    (None, True, "computed", 5.0),
                                                                    (None, False, "identity", 1.0)])
def test_loops_that_can_finish_still_run(trips, cond_value, body_cond, expected):
    with portarun.compile(_loop_model(trips, cond_value, body_cond), "onnxruntime:cpu") as exe:
        result = exe.run({"a": np.ones(4, np.float32)})["y"]
    assert result[0] == expected
