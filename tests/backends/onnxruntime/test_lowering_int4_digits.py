"""int4 MatMulNBits over float activations carried as two int8 digits per block (accuracy level 4): as ONNX
Runtime runs it, the lowered graph computes the fp32 product of the artifact's weights to ~2^-16 of each
activation block's max, far closer than level 4 with plain int8 activations."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import portarun
from portarun_backends.onnxruntime.lowering import lower_int4_matmuls
from portarun_backends.onnxruntime.lowering_int4_digits import (ACCURACY_LEVEL, ACTIVATIONS, activation_ranks,
                                                                split_int4_activations)

DIGIT_ERROR = 1 / (127 * 2 * 254)  # of a block's max: b's own rounding, |b| <= s / 2 quantized with max|b| / 127


def _int4_layer(k: int, ns: tuple[int, ...], x_shape, *, block: int = 128, seed: int = 0):
    """Blocked INT4 DequantizeLinear -> MatMul layers (W [K, N], blocks along K) all reading x; the model
    (opset 21) and each weight in float64."""
    rng = np.random.default_rng(seed)
    nodes, inits, outputs, weights = [], [], [], []
    k_blocks = -(-k // block)
    for i, n in enumerate(ns):
        q = rng.integers(-8, 8, (k, n)).astype(np.int8)
        scale = (rng.uniform(0.5, 1.5, (k_blocks, n)) / (8 * np.sqrt(k))).astype(np.float32)
        inits += [helper.make_tensor(f"w{i}_q", TensorProto.INT4, [k, n], q.reshape(-1).tolist()),
                  numpy_helper.from_array(scale, f"w{i}_scale")]
        nodes += [helper.make_node("DequantizeLinear", [f"w{i}_q", f"w{i}_scale"], [f"w{i}"], axis=0, block_size=block),
                  helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"], name=f"fc{i}")]
        shape = None if x_shape is None else list(x_shape[:-1]) + [n]
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, shape))
        weights.append(q.astype(np.float64) * np.repeat(scale.astype(np.float64), block, axis=0)[:k])
    graph = helper.make_graph(nodes, "int4_layers", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              outputs, inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    proto.ir_version = 10
    return proto, weights


def _lowered(proto: onnx.ModelProto, digits: bool = True) -> onnx.ModelProto:
    ranks = activation_ranks(proto)
    lowered, _ = lower_int4_matmuls(proto, accuracy_level=ACCURACY_LEVEL if not digits else 1)
    if digits:
        split_int4_activations(lowered, ranks)
    return lowered


def _run(proto: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def _bound(x: np.ndarray, w: np.ndarray, block: int) -> np.ndarray:
    """Per output: what the digits may miss (each element's share of its block max) plus fp32 rounding."""
    k = x.shape[-1]
    blocks = np.abs(x.astype(np.float64)).reshape(*x.shape[:-1], -1, block).max(-1)
    block_max = np.repeat(blocks, block, axis=-1)[..., :k]
    return 1.01 * (block_max * DIGIT_ERROR) @ np.abs(w) + 1e-6 * (np.abs(x.astype(np.float64)) @ np.abs(w))


@pytest.mark.parametrize("x_shape, declared", [((1, 1, 768), True), ((2, 5, 768), True), ((3, 768), True),
                                               ((2, 2, 3, 768), True), ((2, 5, 768), False), ((1, 768), False)])
def test_digits_compute_the_fp32_product_to_the_digit_bound(x_shape, declared):
    """Real-size layers (768 x 2048 and 768 x 512, sharing x) at decode, prefill, 2-D and 4-D shapes; with
    a declared shape the block max is pooled in x's shape, without one in a rank-free [-1, block] view."""
    proto, weights = _int4_layer(768, (2048, 512), list(x_shape) if declared else None)
    lowered = _lowered(proto)
    ops = [n.op_type for n in lowered.graph.node]
    assert ops.count("MatMulNBits") == 2 and ops.count("Abs") == 1  # one pair of digits for both MatMuls
    assert ("MaxPool" in ops) == (declared and len(x_shape) >= 3)
    assert all(a.i == ACCURACY_LEVEL for n in lowered.graph.node if n.op_type == "MatMulNBits"
               for a in n.attribute if a.name == "accuracy_level")
    if declared:
        onnx.checker.check_model(lowered)  # (the checker wants declared graph shapes)
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(x_shape) * rng.uniform(0.01, 10, x_shape[:-1] + (1,))).astype(np.float32)
    x[..., 5] *= 40  # an outlier sets one block's max far above the rest of its row
    level4 = _run(_lowered(proto, digits=False), x)
    for got, plain, w in zip(_run(lowered, x), level4, weights):
        exact = x.astype(np.float64) @ w
        assert got.shape == exact.shape
        error = np.abs(got - exact)
        assert (error <= _bound(x, w, 128)).all(), (error / _bound(x, w, 128)).max()
        assert error.max() < np.abs(plain - exact).max() / 30  # int8 activations alone: 2^-8, not 2^-16


def test_zero_blocks_nan_and_inf():
    proto, (w,) = _int4_layer(256, (64,), [4, 256])
    x = np.random.default_rng(2).standard_normal((4, 256)).astype(np.float32)
    x[0] = 0.0  # an all-zero row: s = 0 in every block, so a = b = 0
    x[1, :128] = 0.0  # one zero block next to a live one
    x[2, 7] = np.nan
    x[3, 200] = np.inf
    got = _run(_lowered(proto), x)[0]
    assert (got[0] == 0).all()
    assert (np.abs(got[1] - x[1].astype(np.float64) @ w) <= _bound(x[1], w, 128)).all()
    assert np.isnan(got[2]).all() and not np.isfinite(got[3]).any()  # NaN/Inf reach every output of their row


def test_short_last_block_stays_exact_and_is_reported():
    proto, (w,) = _int4_layer(200, (32,), [3, 200], block=64)  # 3 blocks of 64 and one of 8
    ranks = activation_ranks(proto)
    lowered, _ = lower_int4_matmuls(proto, accuracy_level=1)
    assert split_int4_activations(lowered, ranks) == (0, 1)
    x = np.random.default_rng(3).standard_normal((3, 200)).astype(np.float32)
    np.testing.assert_allclose(_run(lowered, x)[0], x.astype(np.float64) @ w, rtol=1e-4, atol=1e-5)


def test_below_opset_21_nothing_is_rewritten():
    proto, _ = _int4_layer(256, (64,), [2, 256])
    lowered, _ = lower_int4_matmuls(proto, accuracy_level=1)
    older = onnx.ModelProto()
    older.CopyFrom(lowered)
    older.opset_import[0].version = 20
    assert split_int4_activations(older, activation_ranks(proto)) == (0, 1)


@pytest.fixture(scope="module")
def int4_decoder():
    model = portarun.models.build("decoder-tiny")
    return portarun.quantize(model, "int4-weight", accuracy_floor="cosine=0",
                             dims={"batch": 1, "seq": 4, "past_seq": 0, "total_seq": 4}).model


def test_decoder_default_is_digits_named_and_saved(int4_decoder, tmp_path):
    feeds = portarun.random_feeds(int4_decoder.inputs, seed=1, dims={"batch": 2, "seq": 5, "past_seq": 0,
                                                                     "total_seq": 5}, int_high={"input_ids": 100})
    default = portarun.compile(int4_decoder, "onnxruntime:cpu", "int4-weight")
    details = default.provenance.details
    assert details["lower_int4"] == "digits" and details["activations"] == ACTIVATIONS
    assert details["int4_digit_matmul_nodes"] >= 2 and "matmulnbits-2digits" in details["int4_matmuls"]
    exact = portarun.compile(int4_decoder, "onnxruntime:cpu", "int4-weight", lower_int4="matmulnbits")
    assert exact.provenance.details["activations"] == "float"
    assert portarun.compare(default.run(feeds), exact.run(feeds), portarun.Tolerance(rtol=1e-4, atol=1e-4))
    loaded = portarun.load_compiled(default.save(tmp_path / "digits.ort"))
    assert loaded.provenance.details["activations"] == ACTIVATIONS
    assert portarun.compare(loaded.run(feeds), default.run(feeds), portarun.Tolerance(rtol=1e-6, atol=1e-7))


@pytest.mark.parametrize("block", [16, 32, 64, 256])
def test_every_block_size_the_quantizer_writes(block):
    """MLAS quantizes level 4's activations in blocks of the weight's block size: the digits follow it."""
    proto, (w,) = _int4_layer(512, (96,), [3, 512], block=block, seed=block)
    x = np.random.default_rng(block).standard_normal((3, 512)).astype(np.float32) * 3
    got = _run(_lowered(proto), x)[0]
    assert (np.abs(got - x.astype(np.float64) @ w) <= _bound(x, w, block)).all()
