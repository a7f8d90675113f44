"""TensorRT's explicit quantization takes symmetric, signed Q/DQ only; other graphs are refused up front."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from portarun.model import Model, quantization_of
from portarun_backends.tensorrt.qdq import qdq_problems


def qdq_matmul(zero_point: int = 0, zp_type: int = TensorProto.INT8, weight_type: int = TensorProto.INT8,
               block: bool = False) -> Model:
    """x -> Q -> DQ -> MatMul(DQ(w)) with the given zero points and types."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])
    np_type = helper.tensor_dtype_to_np_dtype(zp_type)
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
             numpy_helper.from_array(np.array(zero_point, dtype=np_type), "x_zp")]
    if block:  # opset-21 blocked int4 weights, block size 16 along K
        weights = helper.make_tensor("w_q", weight_type, [32, 16], np.ones(32 * 16, np.int64).tolist())
        inits += [weights, numpy_helper.from_array(np.full((2, 16), 0.01, np.float32), "w_scale")]
        dq_w = helper.make_node("DequantizeLinear", ["w_q", "w_scale"], ["w"], name="dq_w", axis=0, block_size=16)
    else:
        inits += [numpy_helper.from_array(np.ones((32, 16), helper.tensor_dtype_to_np_dtype(weight_type)), "w_q"),
                  numpy_helper.from_array(np.full(16, 0.01, np.float32), "w_scale")]
        dq_w = helper.make_node("DequantizeLinear", ["w_q", "w_scale"], ["w"], name="dq_w", axis=1)
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="q_x"),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"], name="dq_x"),
             dq_w, helper.make_node("MatMul", ["xd", "w"], ["y"], name="mm")]
    graph = helper.make_graph(nodes, "qdq", [x], [y], inits)
    return Model.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))


def test_symmetric_int8_qdq_is_accepted():
    model = qdq_matmul()
    assert quantization_of(model) == "int8"
    assert qdq_problems(model) == []


def test_asymmetric_zero_points_are_named():
    problems = qdq_problems(qdq_matmul(zero_point=3))
    assert problems and "q_x" in problems[0] and "nonzero zero point" in problems[0]


def test_uint8_activations_are_refused():
    problems = qdq_problems(qdq_matmul(zp_type=TensorProto.UINT8))
    assert any("UINT8" in p and "signed INT8" in p for p in problems)


def test_blocked_int4_weights_are_accepted_and_uint4_refused():
    int4 = qdq_matmul(weight_type=TensorProto.INT4, block=True)
    assert qdq_problems(int4) == []
    uint4 = qdq_matmul(weight_type=TensorProto.UINT4, block=True)
    assert any("dq_w" in p and "UINT4" in p for p in qdq_problems(uint4))


def test_float_model_has_no_problems():
    from portarun import models

    assert qdq_problems(models.build("mlp")) == []
    assert onnx.checker.check_model(qdq_matmul().proto) is None
