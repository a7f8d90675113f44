"""Real exports the quantizer must take: weights in Constant nodes, stale declared output shapes, and
models with nothing to quantize (which must say so rather than claim a floor failure)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import portarun
from portarun.quantize import RandomCalibration


def _two_layer(*, constant_weights: bool, declared_out: list) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((32, 64)).astype(np.float32)
    w1 = rng.standard_normal((64, 16)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h"], name="fc0"),
             helper.make_node("Relu", ["h"], ["r"], name="act"),
             helper.make_node("MatMul", ["r", "w1"], ["y"], name="fc1")]
    inits = []
    if constant_weights:  # as some exporters write them: the weight is a Constant node's output
        nodes[:0] = [helper.make_node("Constant", [], ["w0"], value=numpy_helper.from_array(w0)),
                     helper.make_node("Constant", [], ["w1"], value=numpy_helper.from_array(w1))]
    else:
        inits = [numpy_helper.from_array(w0, "w0"), numpy_helper.from_array(w1, "w1")]
    graph = helper.make_graph(nodes, "two_layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, declared_out)], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return proto


def test_weights_in_constant_nodes_are_quantized():
    q = portarun.quantize(portarun.load(_two_layer(constant_weights=True, declared_out=["b", 16])), "int8-weight",
                          calibration=RandomCalibration(4, dims={"b": 2}))
    assert {n.node for n in q.report.nodes} == {"fc0", "fc1"}
    assert all(n.level == "int8" for n in q.report.nodes), q.summary()
    assert not any(node.op_type == "Constant" for node in q.proto.graph.node)
    assert sum(t.data_type == TensorProto.INT8 and len(t.dims) == 2 for t in q.proto.graph.initializer) == 2


def test_a_stale_declared_output_shape_does_not_break_the_post_check():
    # the graph really makes [b, 16]; loading it unchecked is how such a real export gets this far
    stale = _two_layer(constant_weights=False, declared_out=["b", 999])
    q = portarun.quantize(portarun.load(stale, check=False), "int4-weight", calibration=RandomCalibration(4, dims={"b": 2}),
                          accuracy_floor="cosine=0.9")
    assert q.floor_met, q.summary()
    # the declared shape is the source's and is kept as it was
    assert q.proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 999


def test_a_model_with_nothing_to_quantize_says_so():
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu_only",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 4])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    q = portarun.quantize(portarun.load(proto), "int4-weight", calibration=RandomCalibration(2, dims={"b": 1}))
    assert q.floor_met and q.report.nothing_to_quantize
    assert "nothing to quantize" in q.summary() and "NOT met" not in q.summary()
    assert [n.op_type for n in q.proto.graph.node] == ["Relu"]


def test_floor_not_met_always_says_why():
    q = portarun.quantize(portarun.load(_two_layer(constant_weights=False, declared_out=["b", 16])), "int4-weight",
                          calibration=RandomCalibration(4, dims={"b": 2}), accuracy_floor="max_abs=0")
    assert not q.floor_met
    line = next(line for line in q.summary().splitlines() if "NOT met" in line)
    assert line.split("NOT met:", 1)[1].strip()


def test_a_floor_the_float_model_cannot_meet_says_so():
    """exact_match above what the float model scores on the user's labels: no quantization can meet it,
    and the report says that instead of blaming every layer's sensitivity."""
    model = portarun.load(_two_layer(constant_weights=False, declared_out=["b", 16]))
    rng = np.random.default_rng(3)
    samples = [{"x": rng.standard_normal((1, 32)).astype(np.float32)} for _ in range(8)]
    with portarun.compile(model, "onnxruntime:cpu", "fp32") as exe:
        predicted = [int(np.argmax(exe.run(s)["y"])) for s in samples]
    wrong = [(p + 1) % 16 for p in predicted]  # every label disagrees with the float model
    q = portarun.quantize(model, "int8-weight", calibration=RandomCalibration(4, dims={"b": 2}), eval=samples,
                          labels=wrong, accuracy_floor="exact_match=0.5")
    assert not q.floor_met
    assert "the float model itself scores exact_match 0.000" in q.report.why_not_met()
    assert "had to stay float" not in q.report.why_not_met()
