"""An input that reaches an output unchanged (Dropout/Identity folded away by OpenVINO, which then names
the Parameter after the output) is still fed: its result is the input, not uninitialised memory."""

import numpy as np
import pytest
from onnx import TensorProto, helper

import portarun

pytest.importorskip("openvino")


@pytest.mark.parametrize("op", ["Dropout", "Identity"])
def test_an_input_passed_straight_to_an_output_is_fed(op):
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"])], "pass_through",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4, 5])])
    model = portarun.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    with portarun.compile(model, "openvino:cpu") as exe:
        assert exe.dropped_inputs == []
        np.testing.assert_array_equal(exe.run({"x": x})["y"], x)


def test_an_unused_input_is_still_dropped_and_the_used_one_fed():
    graph = helper.make_graph([helper.make_node("Relu", ["a"], ["y"])], "one_unused",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]),
                               helper.make_tensor_value_info("unused", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    model = portarun.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    a = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    with portarun.compile(model, "openvino:cpu") as exe:
        assert exe.dropped_inputs == ["unused"]
        np.testing.assert_array_equal(exe.run({"a": a, "unused": a})["y"], np.maximum(a, 0))
