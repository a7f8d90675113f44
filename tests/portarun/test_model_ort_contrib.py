"""Files from ORT's transformer optimizer carry contrib ops in the ONNX domain: they load; unknown ops do not."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

import portarun
from portarun.errors import ModelValidationError


def _model(op_type: str, opset: int, inputs=("x", "g", "b")):
    node = helper.make_node(op_type, list(inputs), ["y"], epsilon=1e-5, axis=-1)
    initializers = [numpy_helper.from_array(np.full(4, 1.5, np.float32), "g"),
                    numpy_helper.from_array(np.full(4, 0.25, np.float32), "b")][:len(inputs) - 1]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, [2, 4])],
                              [helper.make_tensor_value_info("y", 1, [2, 4])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


@pytest.mark.parametrize("op_type,opset,inputs", [("LayerNormalization", 14, ("x", "g", "b")),
                                                  ("SimplifiedLayerNormalization", 17, ("x", "g"))])
def test_ort_onnx_domain_contrib_ops_load(op_type, opset, inputs):
    proto = _model(op_type, opset, inputs)
    model = portarun.Model.from_proto(proto)
    assert [n.domain for n in model.proto.graph.node] == [""]  # the model itself is not rewritten
    ort = pytest.importorskip("onnxruntime")
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    want = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    targets = ["onnxruntime:cpu"]
    try:
        import jax  # noqa: F401

        targets.append("xla:cpu")
    except ImportError:
        pass
    for target in targets:
        got = portarun.compile(model, target).run({"x": x})["y"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=target)


def test_an_unknown_op_in_the_onnx_domain_still_fails_validation():
    with pytest.raises(ModelValidationError, match="No Op registered for NoSuchOp"):
        portarun.Model.from_proto(_model("NoSuchOp", 17))
