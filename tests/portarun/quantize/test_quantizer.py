import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import portarun
from portarun.errors import CheckFailedError, ModelError, UsageError
from portarun.model import quantization_of
from portarun.quantize import RandomCalibration
from portarun_conformance.tolerances import explain_tolerance

PRECISIONS = ["int8-weight", "int8", "int4-weight"]
# ORT computes int4 MatMuls exactly only at accuracy level 0 (its default quantizes activations to int8)
ORT_EXACT = {"matmulnbits_accuracy_level": 0}


@pytest.fixture(scope="module")
def quantized():
    cache = {}

    def get(name, precision):
        if (name, precision) not in cache:
            cache[name, precision] = portarun.quantize(portarun.models.build(name), precision,
                                                       calibration=RandomCalibration(6, seed=0))
        return cache[name, precision]

    return get


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer"])
def test_builtin_models_quantize_check_and_run_on_reference_and_ort(quantized, builtin_feeds, name, precision):
    q = quantized(name, precision)
    assert q.floor_met, q.summary()
    assert quantization_of(q.model) == precision
    onnx.checker.check_model(q.proto, full_check=True)
    if precision == "int4-weight":
        assert q.model.opset == 21
        int4 = [t for t in q.proto.graph.initializer if t.data_type in (TensorProto.INT4, TensorProto.UINT4)]
        # judged on 16 fresh samples, the small MLP keeps only some layers at int4 (the rest int8)
        assert int4 and sum(n.level == "int4" for n in q.report.nodes) >= 1
        assert all(n.level in ("int4", "int8") for n in q.report.nodes)
    report = q.report
    all_int4 = all(n.level == "int4" for n in report.nodes)
    assert report.weight_bytes_after < report.weight_bytes_before * (0.19 if all_int4 else 0.28)
    feeds = builtin_feeds(name, seed=11, seq=16)
    float_out = portarun.compile(portarun.models.build(name), "onnxruntime:cpu").run(feeds)
    ref = portarun.compile(q.model, "reference", precision).run(feeds)
    ort = portarun.compile(q.model, "onnxruntime:cpu", precision, **ORT_EXACT).run(feeds)
    # ORT computes what the artifact says. For static int8 it fuses QDQ into integer kernels (QGemm,
    # QLinearConv) that requantize between layers, so results differ from the op-by-op reference by
    # about one activation step per layer: compared by cosine there, elementwise otherwise.
    tolerance = (portarun.Tolerance(rtol=1, atol=0.05, min_cosine=0.9995) if precision == "int8"
                 else portarun.Tolerance(rtol=1e-3, atol=1e-3))
    for out in ref:
        assert portarun.compare(ort, ref, tolerance), out
        assert portarun.compare(ref, float_out, portarun.Tolerance(rtol=1, atol=1, min_cosine=0.97)), out


def test_static_int8_quantizes_activations_only_where_it_is_safe(quantized):
    q = quantized("transformer", "int8")
    ops = [n.op_type for n in q.proto.graph.node]
    assert ops.count("QuantizeLinear") > 0
    quantized_inputs = {n.input[0] for n in q.proto.graph.node if n.op_type == "QuantizeLinear"}
    producers = {out: n.op_type for n in q.proto.graph.node for out in n.output}
    # residual Adds, LayerNorm and Softmax outputs feed no QuantizeLinear
    for name in quantized_inputs:
        assert producers.get(name) not in ("Softmax",), name
    consumers = {n.op_type for n in q.proto.graph.node for i in n.input if i.endswith("_act_dq")}
    assert consumers == {"MatMul"}


def test_deterministic_for_a_fixed_seed():
    a = portarun.quantize("builtin:mlp", "int8", seed=5)
    b = portarun.quantize("builtin:mlp", "int8", seed=5)
    assert a.proto.SerializeToString() == b.proto.SerializeToString()
    assert a.report.accuracy.cosine_min == b.report.accuracy.cosine_min


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_calibration_methods_give_valid_models(method):
    q = portarun.quantize("builtin:mlp", "int8", method=method, calibration=RandomCalibration(4, seed=1))
    assert q.report.calibration_method == method and q.floor_met


def test_asymmetric_int4_with_zero_points_runs_on_ort_like_reference(builtin_feeds):
    q = portarun.quantize("builtin:transformer", "int4-weight", block_size=32, symmetric=False,
                          calibration=RandomCalibration(2, seed=0, dims={"seq": 8}))
    assert any(t.data_type == TensorProto.UINT4 for t in q.proto.graph.initializer)
    feeds = builtin_feeds("transformer", seq=8)
    ref = portarun.compile(q.model, "reference", "int4-weight").run(feeds)
    assert portarun.compare(portarun.compile(q.model, "onnxruntime:cpu", "int4-weight", **ORT_EXACT).run(feeds), ref,
                            portarun.Tolerance(rtol=1e-3, atol=1e-4))


def _sensitive_model(outlier=2.5):
    """x -> MatMul w0 -> Relu -> MatMul w1 -> Relu -> MatMul w2 -> y, where w1 has an outlier in every
    16-row block. The outlier rows meet inputs that are always 0 (w0's matching columns are zero), so
    they do not matter in float, but int4 blocks scaled to them round every other weight to zero:
    w1 is the one layer that has to fall back (to int8, whose finer steps survive the outlier)."""
    rng = np.random.default_rng(0)
    w0 = (rng.standard_normal((32, 64)) / np.sqrt(32)).astype(np.float32)
    w1 = (rng.standard_normal((64, 64)) / 8).astype(np.float32)
    w2 = (rng.standard_normal((64, 16)) / 8).astype(np.float32)
    rows = [0, 16, 32, 48]
    w0[:, rows] = 0.0
    w1[rows, :] = outlier
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h0"], name="fc0"),
             helper.make_node("Relu", ["h0"], ["r0"], name="relu0"),
             helper.make_node("MatMul", ["r0", "w1"], ["h1"], name="fc1"),
             helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
             helper.make_node("MatMul", ["r1", "w2"], ["y"], name="fc2")]
    graph = helper.make_graph(nodes, "sensitive", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])],
                              [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate((w0, w1, w2))])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return portarun.load(proto)


def test_accuracy_floor_falls_back_the_sensitive_layer_only():
    model = _sensitive_model()
    calibration = RandomCalibration(8, seed=0, dims={"batch": 16})
    naive = portarun.quantize(model, "int4-weight", block_size=16, calibration=calibration,
                              accuracy_floor="cosine=0")  # no floor: everything int4
    assert all(n.level == "int4" for n in naive.report.nodes)
    assert naive.report.accuracy.cosine_min < 0.9
    q = portarun.quantize(model, "int4-weight", block_size=16, calibration=calibration, accuracy_floor="cosine=0.97")
    levels = {n.node: n.level for n in q.report.nodes}
    assert levels == {"fc0": "int4", "fc1": "int8", "fc2": "int4"}, q.summary()
    assert q.floor_met and q.report.accuracy.cosine_min >= 0.97
    assert "sensitive" in next(n.reason for n in q.report.nodes if n.node == "fc1")
    assert q.report.fallback_steps and q.report.fallback_steps[0].startswith("fc1: int4 -> int8")
    assert "fc1 (MatMul): int8 weight" in q.summary()


def test_static_int8_drops_activation_quantization_on_an_outlier_input():
    # input channel 0 is huge (1e4) but meets a zero weight row: per-tensor uint8 on x wipes out the rest
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((32, 8)) / 6).astype(np.float32)
    w[0] = 0.0
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")], "outlier",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
                              [numpy_helper.from_array(w, "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    samples = []
    for i in range(6):
        x = rng.standard_normal((4, 32)).astype(np.float32)
        x[:, 0] = 1e4
        samples.append({"x": x})
    q = portarun.quantize(portarun.load(proto), "int8", calibration=samples, accuracy_floor="cosine=0.999")
    (decision,) = q.report.nodes
    assert decision.level == "int8" and "sensitive" in decision.reason
    assert quantization_of(q.model) == "int8-weight"  # honest: no activation is quantized any more


def test_unreachable_floor_is_reported_or_raised():
    q = portarun.quantize("builtin:mlp", "int4-weight", accuracy_floor="cosine=1.0,max_abs=0")
    assert not q.floor_met and "NOT met" in q.summary()
    assert all(n.level == "float" for n in q.report.nodes)
    with pytest.raises(CheckFailedError, match="cannot meet the accuracy floor"):
        portarun.quantize("builtin:mlp", "int4-weight", accuracy_floor="max_abs=0", strict=True)


def test_exclude_by_op_or_node_name():
    q = portarun.quantize("builtin:mlp", "int8-weight", exclude=["head"])
    levels = {n.node: (n.level, n.reason) for n in q.report.nodes}
    assert levels["head"] == ("float", "excluded by request") and levels["fc0"][0] == "int8"
    q = portarun.quantize("builtin:cnn", "int4-weight", exclude=["Gemm"])
    assert {n.op: n.level for n in q.report.nodes} == {"Conv": "int4", "Gemm": "float"}
    with pytest.raises(UsageError, match="matches no quantizable node"):
        portarun.quantize("builtin:mlp", "int8", exclude=["Softmax"])


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ModelError, match="already quantized"):
        portarun.quantize(portarun.quantize("builtin:mlp", "int8-weight").model, "int8")
    with pytest.raises(UsageError, match="not a quantized precision"):
        portarun.quantize("builtin:mlp", "fp16")
    with pytest.raises(portarun.InvalidPrecisionError):
        portarun.quantize("builtin:mlp", "int3")
    with pytest.raises(UsageError, match="block size"):
        portarun.quantize("builtin:mlp", "int4-weight", block_size=48)
    with pytest.raises(portarun.InputError, match="calibration sample 0 does not match"):
        portarun.quantize("builtin:mlp", "int8", calibration=[{"x": np.ones((1, 3), np.float32)}])
    with pytest.raises(portarun.InputError, match="empty"):
        portarun.quantize("builtin:mlp", "int8", calibration=[])


def test_save_is_loadable_and_report_serializes(tmp_path):
    q = portarun.quantize("builtin:cnn", "int4-weight", block_size=32)
    path = q.save(tmp_path / "cnn.q.onnx")
    loaded = portarun.load(path)
    assert quantization_of(loaded) == "int4-weight"
    data = __import__("json").loads(q.to_json())
    assert data["precision"] == "int4-weight" and data["weight_ratio"] < 0.25 and len(data["nodes"]) == 4


@pytest.mark.parametrize("target, precision", [
    *[("openvino:cpu", p) for p in PRECISIONS],
    *[("xla:cpu", p) for p in PRECISIONS]])
def test_neutral_artifact_on_other_installed_backends(quantized, builtin_feeds, target, precision):
    """The same QDQ file runs on every installed backend and computes what the reference computes."""
    backend = portarun.get_backend(target.split(":")[0])
    try:
        backend.devices()
    except portarun.BackendUnavailableError as exc:
        pytest.skip(f"{target} not installed: {exc}")
    for name in ("mlp", "transformer"):
        q = quantized(name, precision)
        support = backend.supports(q.model, target, precision)
        if not support:
            pytest.skip(f"{target} cannot take the {precision} artifact yet: {support.reason}")
        feeds = builtin_feeds(name, seed=3, seq=16)
        ref = portarun.compile(q.model, "reference", precision).run(feeds)
        got = portarun.compile(q.model, target, precision).run(feeds)
        tolerance = (portarun.Tolerance(rtol=1, atol=0.05, min_cosine=0.9995) if precision == "int8"
                     else portarun.Tolerance(rtol=1e-3, atol=1e-3))
        # on a CPU without VNNI, OpenVINO's int8 sums saturate: the data file's override says how far, and why
        on_this_cpu, why = explain_tolerance(precision, backend=backend.name, case=f"builtin:{name}")
        if any("VNNI" in reason for reason in why):
            tolerance = on_this_cpu
        assert portarun.compare(got, ref, tolerance), (name, portarun.compare(got, ref, tolerance).summary())
