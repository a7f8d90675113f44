"""Regressions: the accuracy floor holds on fresh data (not just 2 held-out samples), and a model at
an older opset (whose conversion to opset 21 inserts nodes) is quantized at the right nodes."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import portarun
from portarun.model import Model, quantization_of
from portarun.quantize.accuracy import AccuracyFloor, measure
from portarun.quantize.calibration import split_holdout


def test_mlp_int8_floor_holds_on_fresh_random_feeds():
    mlp = portarun.models.build("mlp")
    q = portarun.quantize(mlp, "int8")
    assert q.report.accuracy.samples >= 8 and "none used for calibration" in q.report.validation
    floor = AccuracyFloor.parse(q.report.floor.replace(">=", "="), "int8")  # the floor the report claims
    float_exe = portarun.compile(mlp, "onnxruntime:cpu")
    q_exe = portarun.compile(q.model, "onnxruntime:cpu", "int8")
    feeds = [portarun.random_feeds(mlp.inputs, seed=500 + i, dims={"batch": 1}) for i in range(8)]
    fresh = measure([q_exe.run(f) for f in feeds], [float_exe.run(f) for f in feeds], floor)
    # the report may only claim the floor when fresh data agrees with it
    assert fresh.passed or not q.floor_met, (q.summary(), fresh.text())
    assert q.floor_met  # and for this small MLP it is met


def test_user_data_holds_out_at_least_eight_or_half():
    rows = [{"x": np.full((1, 4), i, np.float32)} for i in range(40)]
    assert [len(part) for part in split_holdout(rows)[:2]] == [30, 10]
    assert [len(part) for part in split_holdout(rows[:16])[:2]] == [8, 8]
    assert [len(part) for part in split_holdout(rows[:6])[:2]] == [3, 3]


def _opset17_model() -> Model:
    """x -> (x - mean) @ w1 -> Relu -> (r - mean) @ w2, ReduceMean with an ``axes`` attribute (opset 17):
    converting to opset 18+ turns each axes attribute into a Constant input, inserting nodes."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array((rng.standard_normal((32, 64)) * 0.2).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((64, 16)) * 0.2).astype(np.float32), "w2")
    nodes = [helper.make_node("ReduceMean", ["x"], ["mean"], axes=[-1], keepdims=1),
             helper.make_node("Sub", ["x", "mean"], ["centered"]),
             helper.make_node("MatMul", ["centered", "w1"], ["h"]),  # unnamed: named by position
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("ReduceMean", ["r"], ["m2"], name="mean2", axes=[-1], keepdims=1),
             helper.make_node("Sub", ["r", "m2"], ["c2"], name="center2"),
             helper.make_node("MatMul", ["c2", "w2"], ["y"], name="fc2")]
    graph = helper.make_graph(nodes, "opset17", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])], [w1, w2])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return Model.from_proto(proto, name="opset17")


@pytest.mark.parametrize("precision", ["int4-weight", "int8"])
def test_opset17_model_with_ops_that_change_on_conversion(precision):
    model = _opset17_model()
    q = portarun.quantize(model, precision)
    assert q.floor_met, q.summary()
    assert quantization_of(q.model) == precision
    onnx.checker.check_model(q.proto, full_check=True)
    # the weight DequantizeLinears feed exactly the two MatMuls' weight inputs, nothing else
    inits = {t.name for t in q.proto.graph.initializer}
    weight_dq = {n.output[0] for n in q.proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                 and not n.input[0].endswith("_act_q")}
    consumers = [(n.op_type, list(n.input).index(i)) for n in q.proto.graph.node for i in n.input if i in weight_dq]
    assert consumers == [("MatMul", 1), ("MatMul", 1)]
    # the report names the nodes as the opset-17 model does (the unnamed MatMul by its position there)
    assert [d.node for d in q.report.nodes] == ["MatMul_2", "fc2"]
    start = "int4" if precision == "int4-weight" else "int8+act"
    assert q.report.nodes[0].level == start or q.report.nodes[1].level == start
    feeds = portarun.random_feeds(model.inputs, seed=7, dims={"batch": 3})
    want = portarun.compile(model, "onnxruntime:cpu").run(feeds)
    got = portarun.compile(q.model, "reference", precision).run(feeds)
    assert portarun.compare(got, want, portarun.Tolerance(rtol=1, atol=1, min_cosine=0.98))
