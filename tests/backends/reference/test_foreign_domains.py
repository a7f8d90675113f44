"""The reference backend says no, naming the ops, to domains onnx's evaluator does not implement."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import portarun


def _contrib_model():
    node = helper.make_node("FastGelu", ["x"], ["y"], domain="com.microsoft")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                              ir_version=9)
    return portarun.Model.from_proto(model, name="fastgelu")


def test_contrib_op_is_refused_by_supports_with_its_name():
    support = portarun.get_backend("reference").supports(_contrib_model(), "reference:cpu", "fp32")
    assert not support
    assert "com.microsoft::FastGelu" in support.reason
    assert support.missing_ops == ("com.microsoft::FastGelu",)


def test_classic_ml_domain_stays_supported():
    node = helper.make_node("Binarizer", ["x"], ["y"], domain="ai.onnx.ml", threshold=0.5)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)],
                              ir_version=9)
    exe = portarun.compile(portarun.Model.from_proto(model), "reference:cpu")
    np.testing.assert_array_equal(exe.run({"x": np.asarray([0.2, 0.7, 0.5], np.float32)})["y"], [0.0, 1.0, 0.0])


def test_contrib_op_compile_fails_with_a_portarun_error():
    with pytest.raises(portarun.PortarunError, match="FastGelu"):
        portarun.compile(_contrib_model(), "reference:cpu")
