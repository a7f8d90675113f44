"""The oracle for a model case: onnx's evaluator when it implements every op, else onnxruntime:cpu."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

import portarun
from portarun_conformance.cases import REFERENCE_LARGE, REFERENCE_SMALL, Case


def _single(node, domain, out_type):
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_value_info("y", out_type)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)],
                              ir_version=9)
    return portarun.Model.from_proto(model, check=False)


def test_zipmap_and_contrib_ops_are_checked_against_onnxruntime():
    zipmap = _single(helper.make_node("ZipMap", ["x"], ["y"], domain="ai.onnx.ml", classlabels_int64s=[0, 1]),
                     "ai.onnx.ml", helper.make_sequence_type_proto(helper.make_map_type_proto(
                         TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, []))))
    gelu = _single(helper.make_node("FastGelu", ["x"], ["y"], domain="com.microsoft"), "com.microsoft",
                   helper.make_tensor_type_proto(TensorProto.FLOAT, [2, 2]))
    case = Case(name="c", source="unused")
    assert case.reference_target(zipmap) == REFERENCE_LARGE
    assert case.reference_target(gelu) == REFERENCE_LARGE


def test_ops_the_evaluator_has_keep_the_reference():
    binarizer = _single(helper.make_node("Binarizer", ["x"], ["y"], domain="ai.onnx.ml", threshold=0.0), "ai.onnx.ml",
                        helper.make_tensor_type_proto(TensorProto.FLOAT, [2, 2]))
    assert Case(name="c", source="unused").reference_target(binarizer) == REFERENCE_SMALL
    exe = portarun.compile(binarizer, REFERENCE_SMALL)
    np.testing.assert_array_equal(exe.run({"x": np.asarray([[-1, 2], [0, 3]], np.float32)})["y"], [[0, 1], [0, 1]])
