"""int4 portable by construction: the quantizer never writes a blocked layout an in-tree backend refuses
(OpenVINO's ONNX frontend refuses a short last block): such layers stay int8 and the report says why."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import portarun
from portarun.quantize import RandomCalibration, check_on_targets


def _depthwise_and_odd() -> portarun.Model:
    """A depthwise Conv (1 input channel per group), a Conv with 16 input channels and a MatMul whose
    reduction dim (200) no power-of-two block of 16-128 divides... except 8, which is under 16."""
    rng = np.random.default_rng(0)
    dw = rng.standard_normal((16, 1, 3, 3)).astype(np.float32)
    pw = rng.standard_normal((24, 16, 1, 1)).astype(np.float32)
    odd = rng.standard_normal((200, 10)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "dw"], ["a"], name="depthwise", group=16, pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["a", "pw"], ["b"], name="pointwise"),
             helper.make_node("Reshape", ["b", "shape"], ["flat"], name="flatten"),
             helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["cut"], name="cut"),
             helper.make_node("MatMul", ["cut", "odd"], ["y"], name="head")]
    inits = [numpy_helper.from_array(dw, "dw"), numpy_helper.from_array(pw, "pw"),
             numpy_helper.from_array(odd, "odd"), numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
             numpy_helper.from_array(np.array([0], np.int64), "starts"),
             numpy_helper.from_array(np.array([200], np.int64), "ends"),
             numpy_helper.from_array(np.array([1], np.int64), "axes")]
    graph = helper.make_graph(nodes, "portable", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return portarun.load(proto)


@pytest.fixture(scope="module")
def quantized():
    return portarun.quantize(_depthwise_and_odd(), "int4-weight", calibration=RandomCalibration(3),
                             accuracy_floor="cosine=0")


def test_unportable_int4_layers_stay_int8_with_a_reason(quantized):
    decisions = {n.node: n for n in quantized.report.nodes}
    assert decisions["pointwise"].level == "int4"
    for name in ("depthwise", "head"):
        assert decisions[name].level == "int8" and "not portable" in decisions[name].reason, quantized.summary()
    assert "not portable" in quantized.summary()


@pytest.mark.parametrize("target", ["onnxruntime:cpu", "openvino:cpu", "xla:cpu", "reference"])
def test_the_int4_artifact_compiles_on_every_cpu_backend(quantized, target):
    try:
        portarun.get_backend(target.split(":")[0]).devices()
    except portarun.PortarunError as exc:
        pytest.skip(f"{target} unavailable here: {exc}")
    assert check_on_targets(quantized.model, "int4-weight", [target]) == []


def test_check_on_targets_names_the_target_that_refuses():
    failures = check_on_targets(portarun.models.build("mlp"), "int4-weight", ["nosuchbackend:cpu"])
    assert len(failures) == 1 and failures[0].startswith("nosuchbackend:cpu: ")
