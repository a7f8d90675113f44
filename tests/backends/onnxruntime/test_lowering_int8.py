"""int8 weight-only MatMuls with float activations as one MatMulInteger over the activations' int8 digits:
the lowered graph, as ONNX Runtime runs it, computes what the fp32-folded artifact computes."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import portarun
from portarun.quantize import RandomCalibration
from portarun_backends.onnxruntime.lowering_int8 import ACTIVATIONS, FORM, lower_int8_digit_matmuls

FOLD = {"session.disable_quant_qdq": "1"}  # ORT folds the DQ weights to fp32 (and does not fuse them)


def _session(proto: onnx.ModelProto, config: dict | None = None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    for key, value in (config or {}).items():
        so.add_session_config_entry(key, value)
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _int8_layer(k: int, n: int, x_shape: list, *, gemm: bool = False, zero_points: bool = False,
                opset: int = 17, seed: int = 0) -> tuple[onnx.ModelProto, np.ndarray]:
    """A per-channel int8 DequantizeLinear -> MatMul (W [K, N], axis 1) or -> Gemm(transB) (W [N, K], axis 0,
    with a bias) model, and its weight in float64 as [K, N]."""
    rng = np.random.default_rng(seed)
    q = rng.integers(-127, 128, (n, k) if gemm else (k, n)).astype(np.int8)
    scale = (rng.uniform(0.5, 1.5, n) / (127 * np.sqrt(k))).astype(np.float32)
    inits = [numpy_helper.from_array(q, "w_q"), numpy_helper.from_array(scale, "w_scale")]
    dq_inputs = ["w_q", "w_scale"]
    zp = np.zeros(n, np.int8)
    if zero_points:
        zp = rng.integers(-20, 21, n).astype(np.int8)
        inits.append(numpy_helper.from_array(zp, "w_zero_point"))
        dq_inputs.append("w_zero_point")
    nodes = [helper.make_node("DequantizeLinear", dq_inputs, ["w"], axis=0 if gemm else 1)]
    if gemm:
        inits.append(numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "bias"))
        nodes.append(helper.make_node("Gemm", ["x", "w", "bias"], ["y"], transB=1))
    else:
        nodes.append(helper.make_node("MatMul", ["x", "w"], ["y"]))
    graph = helper.make_graph(nodes, "int8_layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, x_shape[:-1] + [n])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 10 if opset >= 21 else 8
    dims = (slice(None), None) if gemm else (None, slice(None))  # the output channel: W [N, K] or [K, N]
    w = (q.astype(np.float64) - zp[dims]) * scale[dims].astype(np.float64)
    return proto, w.T if gemm else w


def _lowered(proto: onnx.ModelProto) -> onnx.ModelProto:
    lowered, count = lower_int8_digit_matmuls(proto)
    assert count == 1
    ops = [n.op_type for n in lowered.graph.node]
    assert "MatMulInteger" in ops and "DequantizeLinear" not in ops and "MatMul" not in ops
    onnx.checker.check_model(lowered, full_check=True)  # standard ONNX at the model's opset
    return lowered


# ReduceMax's axes: an attribute before 18, an input from 18; 21: the opset of portarun's int4 artifacts
@pytest.mark.parametrize("opset", [13, 17, 18, 21])
@pytest.mark.parametrize("zero_points", [False, True])
@pytest.mark.parametrize("x_shape", [[1, 1, 768], [3, 5, 768], [4, 768], [768]])  # decode, batch x seq, 2-D, 1-D
def test_digits_matmul_equals_fp32_fold_on_real_size_layer(x_shape, zero_points, opset):
    proto, w = _int8_layer(768, 2048, x_shape, zero_points=zero_points, opset=opset)
    x = np.random.default_rng(1).standard_normal(x_shape).astype(np.float32) * 3
    folded = _session(proto, FOLD).run(None, {"x": x})[0]
    got = _session(_lowered(proto)).run(None, {"x": x})[0]
    exact = x.astype(np.float64) @ w
    assert got.shape == folded.shape == exact.shape
    np.testing.assert_allclose(got, folded, rtol=1e-4, atol=1e-4)
    # as close to the exact product as the fp32 fold itself, within the digits' 2^-21 of the row max
    assert np.abs(got - exact).max() < 4 * np.abs(folded - exact).max() + 1e-5


@pytest.mark.parametrize("zero_points", [False, True])
def test_gemm_trans_b_with_bias_lowers_to_digits(zero_points):
    proto, w = _int8_layer(2048, 768, [6, 2048], gemm=True, zero_points=zero_points)
    x = np.random.default_rng(2).standard_normal((6, 2048)).astype(np.float32)
    lowered = _lowered(proto)
    assert [n.op_type for n in lowered.graph.node][-1] == "Add"  # Gemm's C after the row scale
    folded = _session(proto, FOLD).run(None, {"x": x})[0]
    np.testing.assert_allclose(_session(lowered).run(None, {"x": x})[0], folded, rtol=1e-4, atol=1e-4)


def test_rows_of_any_magnitude_keep_fp32_relative_accuracy():
    """m is per row: a row of 1e-20s and one of 1e20s each keep ~2^-21 of their own max."""
    proto, w = _int8_layer(768, 256, [4, 768])
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 768)).astype(np.float32) * np.array([[1e-20], [1e20], [1.0], [7.0]], np.float32)
    got = _session(_lowered(proto)).run(None, {"x": x})[0].astype(np.float64)
    exact = x.astype(np.float64) @ w
    row_bound = 1e-5 * np.abs(x).max(axis=1, keepdims=True) * np.abs(w).sum(axis=0).max()
    assert (np.abs(got - exact) <= row_bound).all()


def test_zero_row_gives_zero_and_nan_inf_propagate():
    proto, w = _int8_layer(768, 512, [5, 768], zero_points=True)
    x = np.random.default_rng(4).standard_normal((5, 768)).astype(np.float32)
    x[0] = 0.0
    x[1, 300] = np.nan  # not the row's first element: ORT's ReduceMax would drop it
    x[2, 0] = np.nan
    x[3, 500] = np.inf
    got = _session(_lowered(proto)).run(None, {"x": x})[0]
    assert (got[0] == 0).all()
    assert np.isnan(got[1]).all() and np.isnan(got[2]).all()
    assert (~np.isfinite(got[3])).all()
    np.testing.assert_allclose(got[4], x[4].astype(np.float64) @ w, rtol=1e-4, atol=1e-4)


def _integer_matmul(lowered: onnx.ModelProto) -> onnx.ModelProto:
    """The lowering's own MatMulInteger node (its weight, zero points, a_zero_point) with its digits as input."""
    node = next(n for n in lowered.graph.node if n.op_type == "MatMulInteger")
    inits = [t for t in lowered.graph.initializer if t.name in node.input]
    graph = helper.make_graph([node], "integer_matmul",
                              [helper.make_tensor_value_info(node.input[0], TensorProto.UINT8, None)],
                              [helper.make_tensor_value_info(node.output[0], TensorProto.INT32, None)], inits)
    proto = helper.make_model(graph, opset_imports=list(lowered.opset_import))
    proto.ir_version = lowered.ir_version
    return proto


@pytest.mark.parametrize("zero_points", [False, True])
def test_worst_case_digits_are_exact_integer_products(zero_points):
    """AVX2's u8 x s8 vpmaddubsw adds two products into int16: digits as uint8 in [0, 128] against weights at
    +-127 peak at 2 * 128 * 127 = 32,512, so every result is the exact integer. Asserted on any CPU (on
    VNNI/AMX there is no int16 step; the test detects nothing and asserts exactness everywhere)."""
    k, n = 2048, 256
    proto, _ = _int8_layer(k, n, [1, k], zero_points=zero_points)
    rng = np.random.default_rng(5)
    q = np.where(rng.random((k, n)) < 0.5, -127, 127).astype(np.int8)
    q[:, :8] = 127
    q[:, 8:16] = -127
    dq = next(t for t in proto.graph.initializer if t.name == "w_q")
    dq.CopyFrom(numpy_helper.from_array(q, "w_q"))
    integer = _integer_matmul(_lowered(proto))
    digits = np.where(rng.random((2, 3, k)) < 0.5, 0, 128).astype(np.uint8)
    digits[0, 0] = 128  # every uint8 at its top: pairs of 128 * +-127 (digit +64)
    digits[0, 1] = 0  # every digit at -64
    digits[1, 0, 0::2], digits[1, 0, 1::2] = 128, 0
    got = _session(integer).run(None, {integer.graph.input[0].name: digits})[0]
    zp = next((numpy_helper.to_array(t) for t in integer.graph.initializer if t.data_type == TensorProto.INT8
               and t.dims == [n]), np.zeros(n, np.int8))
    expected = (digits.astype(np.int64) - 64) @ (q.astype(np.int64) - zp.astype(np.int64))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got.astype(np.int64), expected)


def test_extreme_activations_round_trip_exactly_through_the_whole_graph():
    """Rows whose digits sit at their extremes (d0 = +-63 or +-62 with d1 = +-64), end to end: a row max of 63
    makes m = 1, so these activations are represented exactly and only fp32 rounding remains."""
    k, n = 1024, 64
    proto, w = _int8_layer(k, n, [3, k])
    rng = np.random.default_rng(6)
    signs = np.where(rng.random((3, k)) < 0.5, -1.0, 1.0)
    x = (signs * np.array([[63.0], [62.5], [0.5]])).astype(np.float32)  # 62.5: d0 = 62 (half to even), d1 = 64
    x[:, 0] = 63.0
    got = _session(_lowered(proto)).run(None, {"x": x})[0]
    exact = x.astype(np.float64) @ w
    np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5 * np.abs(exact).max())


@pytest.fixture(scope="module")
def int8_transformer():
    model = portarun.models.build("transformer", hidden=96, heads=4, ffn=200)
    return portarun.quantize(model, "int8-weight", calibration=RandomCalibration(2, dims={"seq": 8})).model


def test_default_int8_weight_runs_digits_named_in_provenance(int8_transformer, tmp_path):
    feeds = portarun.random_feeds(int8_transformer.inputs, seed=7, dims={"batch": 3, "seq": 6})
    default = portarun.compile(int8_transformer, "onnxruntime:cpu", "int8-weight")
    details = default.provenance.details
    assert details["lower_int8"] == "digits" and details["activations"] == ACTIVATIONS
    assert details["digit_matmul_nodes"] == 6 and FORM in details["int8_matmuls"]
    ops = [n.op_type for n in default.source.proto.graph.node]
    assert ops.count("MatMulInteger") == 6 and "DequantizeLinear" not in ops
    folded = portarun.compile(int8_transformer, "onnxruntime:cpu", "int8-weight", lower_int8="fold")
    assert folded.provenance.details["lower_int8"] == "fold" and "digit_matmul_nodes" not in folded.provenance.details
    assert portarun.compare(default.run(feeds), folded.run(feeds), portarun.Tolerance(rtol=1e-4, atol=1e-5))
    loaded = portarun.load_compiled(default.save(tmp_path / "digits.ort"))  # the saved graph is the lowered one
    assert loaded.provenance.details["activations"] == ACTIVATIONS
    assert portarun.compare(loaded.run(feeds), default.run(feeds), portarun.Tolerance(rtol=1e-6, atol=1e-7))
    # int8 activations stay a named option: MatMulNBits at level 4, no digits
    dynamic = portarun.compile(int8_transformer, "onnxruntime:cpu", "int8-weight", activations="int8-dynamic")
    assert dynamic.provenance.details["lower_int8"] == "matmulnbits"
    assert "digit_matmul_nodes" not in dynamic.provenance.details
    with pytest.raises(portarun.UsageError, match="digits"):
        portarun.compile(int8_transformer, "onnxruntime:cpu", "int8-weight", lower_int8="int4")


def test_embedding_gather_stays_gather_block_quantized():
    rng = np.random.default_rng(8)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["emb", "ids"], ["h"], name="embed"),
         helper.make_node("MatMul", ["h", "w"], ["y"], name="fc")], "embedding",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 32])],
        [numpy_helper.from_array(rng.standard_normal((100, 96)).astype(np.float32), "emb"),
         numpy_helper.from_array(rng.standard_normal((96, 32)).astype(np.float32), "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    q = portarun.quantize(portarun.load(proto), "int8-weight", accuracy_floor="cosine=0")
    exe = portarun.compile(q.model, "onnxruntime:cpu", "int8-weight")
    ops = [n.op_type for n in exe.source.proto.graph.node]
    assert "GatherBlockQuantized" in ops and "MatMulInteger" in ops and "DequantizeLinear" not in ops
    feeds = {"ids": rng.integers(0, 100, (2, 5))}
    neutral = portarun.compile(q.model, "reference", "int8-weight").run(feeds)
    assert portarun.compare(exe.run(feeds), neutral, portarun.Tolerance(rtol=1e-4, atol=1e-4))


def test_opset_below_13_is_left_alone():
    proto, _ = _int8_layer(64, 32, [2, 64], opset=12)
    lowered, count = lower_int8_digit_matmuls(proto)
    assert count == 0 and lowered == proto


def test_per_tensor_scale_and_zero_point_lower_too():
    """A foreign QDQ file's per-tensor int8 weight (scalar scale and zero point) is a per-channel one with
    every column alike."""
    rng = np.random.default_rng(9)
    q = rng.integers(-127, 128, (256, 96)).astype(np.int8)
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero_point"], ["w"]),
         helper.make_node("MatMul", ["x", "w"], ["y"])], "per_tensor",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 96])],
        [numpy_helper.from_array(q, "w_q"), numpy_helper.from_array(np.float32(0.004), "w_scale"),
         numpy_helper.from_array(np.int8(3), "w_zero_point")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    x = rng.standard_normal((2, 256)).astype(np.float32)
    expected = x.astype(np.float64) @ ((q.astype(np.float64) - 3) * np.float32(0.004))
    np.testing.assert_allclose(_session(_lowered(proto)).run(None, {"x": x})[0], expected, rtol=1e-4, atol=1e-4)


def test_digits_stay_in_the_range_that_cannot_saturate_avx2():
    """What protects non-VNNI CPUs, checked on every CPU: the graph's uint8 digits lie in [0, 128] (so u8 x s8
    pairs stay within int16) for activations at ties, row maxima, huge and tiny magnitudes."""
    proto, _ = _int8_layer(512, 16, [6, 512])
    lowered = _lowered(proto)
    digits = next(n.input[0] for n in lowered.graph.node if n.op_type == "MatMulInteger")
    lowered.graph.output.append(helper.make_tensor_value_info(digits, TensorProto.UINT8, None))
    rng = np.random.default_rng(10)
    x = rng.standard_normal((6, 512)).astype(np.float32)
    x[0] = np.where(rng.random(512) < 0.5, -1, 1) * 63.0  # every element a row maximum
    x[1] = (rng.integers(-126, 127, 512) + 0.5).astype(np.float32)  # r at ties (half to even)
    x[1, 0] = 126.5
    x[2] *= 1e30
    x[3] *= 1e-30
    x[4] = rng.uniform(-1, 1, 512).astype(np.float32) * (1 - 2 ** -23)
    x[5] = 0
    got = _session(lowered).run(None, {"x": x})[1]
    assert got.shape == (6, 3, 512) and got.max() <= 128 and 2 * 128 * 127 <= np.iinfo(np.int16).max
    assert (got[5] == 64).all()  # an all-zero row: every digit 0
    assert (np.abs(got[:, 0].astype(int) - 64) <= 63).all()  # the leading digit within +-63


def test_matmuls_reading_one_activation_share_its_digits():
    rng = np.random.default_rng(11)
    inits, nodes = [], []
    for i in range(2):
        inits += [numpy_helper.from_array(rng.integers(-127, 128, (64, 32)).astype(np.int8), f"w{i}_q"),
                  numpy_helper.from_array(np.full(32, 0.01, np.float32), f"w{i}_scale")]
        nodes += [helper.make_node("DequantizeLinear", [f"w{i}_q", f"w{i}_scale"], [f"w{i}"], axis=1),
                  helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"])]
    graph = helper.make_graph(nodes, "shared", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
                              [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [2, 32]) for i in range(2)],
                              inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    lowered, count = lower_int8_digit_matmuls(proto)
    ops = [n.op_type for n in lowered.graph.node]
    assert count == 2 and ops.count("MatMulInteger") == 2 and ops.count("QuantizeLinear") == 1
    x = rng.standard_normal((2, 64)).astype(np.float32)
    for want, got in zip(_session(proto, FOLD).run(None, {"x": x}), _session(lowered).run(None, {"x": x})):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
