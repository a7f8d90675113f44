"""OpenVINO has no ai.onnx.ml and only some com.microsoft ops: the refusal names the ops."""

from __future__ import annotations

import pytest
from onnx import TensorProto, helper

import portarun


def _model(node, domain):
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)],
                              ir_version=9)
    return portarun.Model.from_proto(model, name="foreign", check=False)


def test_classic_ml_op_is_refused_by_name():
    node = helper.make_node("TreeEnsembleRegressor", ["x"], ["y"], domain="ai.onnx.ml", n_targets=1,
                            nodes_treeids=[0], nodes_nodeids=[0], nodes_featureids=[0], nodes_values=[0.0],
                            nodes_modes=["LEAF"], nodes_truenodeids=[0], nodes_falsenodeids=[0],
                            target_treeids=[0], target_nodeids=[0], target_ids=[0], target_weights=[1.5])
    with pytest.raises(portarun.PortarunError, match="TreeEnsembleRegressor"):
        portarun.compile(_model(node, "ai.onnx.ml"), "openvino:cpu")


def test_unconverted_contrib_op_is_refused_by_name():
    node = helper.make_node("QLinearSoftmax", ["x"], ["y"], domain="com.microsoft", opset=13)
    with pytest.raises(portarun.PortarunError, match="QLinearSoftmax"):
        portarun.compile(_model(node, "com.microsoft"), "openvino:cpu")
