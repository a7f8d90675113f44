"""Quantized (QDQ) decoders on xla:cpu: weights stay int8/int4, dequantized inside one compiled program."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import portarun
from portarun import models

from . import _models

pytest.importorskip("jax")


@pytest.fixture(scope="module")
def decoder_tiny():
    return models.build("decoder-tiny")


def _prefill_feeds(model, seq=5, capacity=8):
    feeds = {"input_ids": (np.arange(seq, dtype=np.int64)[None] * 37 + 3) % 256,
             "position_ids": np.arange(seq, dtype=np.int64)[None],
             "attention_mask": np.concatenate([np.zeros((1, capacity), np.int64), np.ones((1, seq), np.int64)], 1)}
    for spec in model.inputs[3:]:
        feeds[spec.name] = np.zeros((1, spec.shape[1], capacity, spec.shape[3]), np.float32)
    return feeds


@pytest.mark.parametrize("precision", ["int8-weight", "int4-weight"])
def test_static_cache_decode_compiles_once_per_phase_with_fused_weights(decoder_tiny, precision):
    quantized = portarun.quantize(decoder_tiny, precision).model
    exe = portarun.compile(quantized, "xla:cpu", precision)
    result = portarun.generate(exe, [5, 9, 17, 3], 12, cache="static", capacity=32)
    assert result.generated_tokens == 12
    details = exe.provenance.details
    # prefill and one decode step: two shape signatures, no recompiles per token, nothing op by op
    assert details["compile_count"] <= 2 and len(details["signatures"]) <= 2, details["signatures"]
    assert "eager" not in details
    # every MatMul weight (2 layers x qkv/o/gate_up/down + lm_head) and the embedding table are fused
    assert details["rewrites"]["qmatmul"] == 9
    assert details["rewrites"]["qgather"] == 1
    assert not any(node.op_type == "DequantizeLinear" for node in exe.program.graph.nodes)
    # weights stay integer on the device: 1 byte per int8 weight, half a byte per int4 weight
    float_bytes = sum(t.nbytes for t in (portarun.compile(decoder_tiny, "xla:cpu").program.weights.values()))
    limit = 0.3 if precision == "int8-weight" else 0.2
    assert details["weights_on_device_bytes"] < limit * float_bytes
    # and the tokens are those the reference backend decodes from the same quantized model
    reference = portarun.generate(portarun.compile(quantized, "reference:cpu", precision), [5, 9, 17, 3], 12,
                                  cache="static", capacity=32)
    np.testing.assert_array_equal(result.tokens, reference.tokens)


@pytest.mark.parametrize("precision", ["int8-weight", "int4-weight"])
def test_quantized_prefill_logits_match_reference(decoder_tiny, precision):
    quantized = portarun.quantize(decoder_tiny, precision).model
    feeds = _prefill_feeds(quantized)
    want = portarun.compile(quantized, "reference:cpu", precision).run(feeds)["logits"]
    got = portarun.compile(quantized, "xla:cpu", precision).run(feeds)["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _dequantize_gather(kind: str) -> portarun.Model:
    """Gather(DequantizeLinear(table), ids): int8 per row with zero points, or int4 blocked along columns."""
    rng = np.random.default_rng(7)
    rows, cols = 40, 32
    if kind == "int8-row":
        table = _models.init("table", rng.integers(-127, 127, size=(rows, cols)).astype(np.int8))
        params = [_models.init("scale", (rng.random(rows) * 0.1 + 0.01).astype(np.float32)),
                  _models.init("zp", rng.integers(-3, 3, size=rows).astype(np.int8))]
        attrs = {"axis": 0}
    else:
        table = helper.make_tensor("table", TensorProto.INT4, [rows, cols], rng.integers(-8, 8, rows * cols).tolist())
        params = [_models.init("scale", (rng.random((rows, cols // 8)) * 0.1 + 0.01).astype(np.float32)),
                  helper.make_tensor("zp", TensorProto.INT4, [rows, cols // 8],
                                     rng.integers(-2, 2, rows * cols // 8).tolist())]
        attrs = {"axis": 1, "block_size": 8}
    nodes = [helper.make_node("DequantizeLinear", ["table", "scale", "zp"], ["e"], **attrs),
             helper.make_node("Gather", ["e", "ids"], ["y"], axis=0)]
    return _models.model(nodes, [_models.tensor("ids", TensorProto.INT64, ["b", "s"])],
                         [_models.tensor("y", TensorProto.FLOAT, ["b", "s", cols])], [table] + params,
                         name=f"dq_gather_{kind.replace('-', '_')}")


@pytest.mark.parametrize("kind", ["int8-row", "int4-block"])
def test_quantized_embedding_gathers_rows_then_dequantizes(kind):
    model = _dequantize_gather(kind)
    ids = np.array([[0, 39, -1, 7], [3, 3, -40, 12]], np.int64)  # negative ids count from the end
    precision = "int8-weight" if kind == "int8-row" else "int4-weight"
    want = portarun.compile(model, "reference:cpu", precision).run({"ids": ids})["y"]
    exe = portarun.compile(model, "xla:cpu", precision)
    np.testing.assert_allclose(exe.run({"ids": ids})["y"], want, rtol=1e-6, atol=1e-6)
    assert exe.provenance.details["rewrites"]["qgather"] == 1


@pytest.mark.parametrize("block_size,zero_point", [(0, True), (0, False), (16, True), (16, False)])
def test_chunked_quantized_matmul_pads_and_splits_columns(monkeypatch, block_size, zero_point):
    """Weights wider than one chunk are split along N (the last chunk zero-padded) and scanned."""
    from portarun_backends.xla.quant import packing

    monkeypatch.setattr(packing, "CHUNK_ELEMENTS", 64 * 128)  # K=64: chunks of 128 columns
    model = _dequantize_matmul_wide(block_size, zero_point, n=300)
    x = np.random.default_rng(2).standard_normal((3, 64)).astype(np.float32)
    precision = "int4-weight" if block_size else "int8-weight"
    want = portarun.compile(model, "reference:cpu", precision).run({"x": x})["y"]
    exe = portarun.compile(model, "xla:cpu", precision, quantized_matmul="chunked")
    np.testing.assert_allclose(exe.run({"x": x})["y"], want, rtol=1e-4, atol=1e-4)
    (stored,) = [w for name, w in exe.program.weights.items() if name.startswith("wq")]
    assert stored.shape[0] == 3  # ceil(300 / 128) chunks


def _dequantize_matmul_wide(block_size: int, zero_point: bool, n: int) -> portarun.Model:
    rng = np.random.default_rng(4)
    K = 64
    if block_size:
        w_init = helper.make_tensor("wq", TensorProto.INT4, [K, n], rng.integers(-8, 8, K * n).tolist())
        scale = (rng.random((K // block_size, n)) * 0.1 + 0.01).astype(np.float32)
        zero = helper.make_tensor("zp", TensorProto.INT4, [K // block_size, n],
                                  rng.integers(-2, 2, K // block_size * n).tolist())
        attrs = {"axis": 0, "block_size": block_size}
    else:
        w_init = _models.init("wq", rng.integers(-127, 127, size=(K, n)).astype(np.int8))
        scale = (rng.random(n) * 0.1 + 0.01).astype(np.float32)
        zero = _models.init("zp", rng.integers(-5, 5, size=n).astype(np.int8))
        attrs = {"axis": 1}
    inputs = ["wq", "scale"] + (["zp"] if zero_point else [])
    nodes = [helper.make_node("DequantizeLinear", inputs, ["w"], **attrs), helper.make_node("MatMul", ["x", "w"], ["y"])]
    inits = [w_init, _models.init("scale", scale)] + ([zero] if zero_point else [])
    model = _models.model(nodes, [_models.tensor("x", TensorProto.FLOAT, ["batch", K])],
                          [_models.tensor("y", TensorProto.FLOAT, ["batch", n])], inits, name=f"dq_wide_b{block_size}")
    return model
